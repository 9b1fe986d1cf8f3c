"""The OBJ writer of `texturepose predict` against trimesh (the independent reader and the
exporter it replaced)."""

from __future__ import annotations

import io

import numpy as np
import trimesh

from texturepose.inference.export import obj_bytes


def test_obj_reads_back_as_the_mesh_trimesh_writes(anny_body):
    faces = anny_body.faces.cpu().numpy()
    rng = np.random.default_rng(0)
    verts = (rng.normal(size=(anny_body.num_vertices, 3)) * [0.3, 0.8, 0.2] + [0, 0, 4]).astype(
        np.float32)
    ours = trimesh.load(io.BytesIO(obj_bytes(verts, faces)), file_type="obj", process=False)
    theirs_bytes = trimesh.Trimesh(verts.astype(np.float64), faces, process=False).export(
        file_type="obj")
    theirs = trimesh.load(io.BytesIO(theirs_bytes.encode()), file_type="obj", process=False)
    assert ours.vertices.shape == (anny_body.num_vertices, 3)
    np.testing.assert_array_equal(ours.faces, faces)
    np.testing.assert_allclose(ours.vertices, verts, atol=1e-6)
    np.testing.assert_allclose(ours.vertices, theirs.vertices, atol=1e-6)
    np.testing.assert_array_equal(ours.faces, theirs.faces)
