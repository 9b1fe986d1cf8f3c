"""Anny (NAVER, Apache-2.0, MakeHuman CC0 assets) behind the BodyModel interface.

* float32; 24 main body bones are regressed (``ANNY_BONES``), the other 80 (fingers, toes,
  twist bones, eyes) stay at rest.
* Shape = Anny's 6 default phenotypes (gender, age, muscle, weight, height, proportions) in
  [0, 1]; the neutral shape is 0.5 everywhere.
* Frame: Anny is Z-up facing -Y; we rotate it to Y-up facing +Z (``ANNY_TO_CANONICAL``) and
  express the pose rotations in that frame too, so the rest-frame convention matches SMPL's.
  The root bone sits at the origin.
* Keypoints: COCO-17 from Anny's own regressor (``data/keypoints/coco.pth``); the other superset
  points from vertex regressors this project derives (see :mod:`texturepose.body.anny_keypoints`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import torch

from texturepose.body.base import BodyModel, BodyModelError, BodyOutput
from texturepose.keypoints import flip_permutation

log = logging.getLogger(__name__)

#: Largest difference (metres) accepted between the fast keypoint path and the full model.
FAST_KEYPOINT_TOLERANCE = 1e-4
#: Morphological ages (years) of the adult population the shape prior is drawn from.
ADULT_AGES = (18.0, 80.0)

#: The regressed bones, root first. Names are Anny's; the comment gives the anatomical joint.
ANNY_BONES: tuple[str, ...] = (
    "root",  # global orientation, about the pelvis
    "spine05", "spine04", "spine03", "spine02", "spine01",  # lumbar to upper thoracic
    "neck01", "head",
    "upperleg01.L", "lowerleg01.L", "foot.L",  # hip, knee, ankle
    "upperleg01.R", "lowerleg01.R", "foot.R",
    "clavicle.L", "shoulder01.L", "upperarm01.L", "lowerarm01.L", "wrist.L",
    "clavicle.R", "shoulder01.R", "upperarm01.R", "lowerarm01.R", "wrist.R",
)  # fmt: skip

#: Anny coordinates (Z up, facing -Y) -> canonical (Y up, facing +Z, left at +X).
ANNY_TO_CANONICAL = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])

#: Face part labels, from the bone each face's vertices are mostly skinned to.
PART_NAMES: tuple[str, ...] = (
    "head", "neck", "torso", "pelvis",
    "l_upperarm", "l_forearm", "l_hand", "r_upperarm", "r_forearm", "r_hand",
    "l_thigh", "l_shin", "l_foot", "r_thigh", "r_shin", "r_foot",
)  # fmt: skip


def _part_of_bone(name: str) -> str:
    side = "l_" if name.endswith(".L") else "r_" if name.endswith(".R") else ""
    base = name.split(".")[0]
    if base in ("head", "jaw", "eye", "tongue00") or base.startswith(("tongue", "eye", "jaw")):
        return "head"
    if base.startswith("neck"):
        return "neck"
    if base.startswith("spine") or base in ("clavicle", "breast"):
        return "torso"
    if base in ("root", "pelvis"):
        return "pelvis"
    if base.startswith(("shoulder", "upperarm")):
        return side + "upperarm"
    if base.startswith("lowerarm"):
        return side + "forearm"
    if base.startswith(("wrist", "finger", "metacarpal")):
        return side + "hand"
    if base.startswith("upperleg"):
        return side + "thigh"
    if base.startswith("lowerleg"):
        return side + "shin"
    if base.startswith(("foot", "toe")):
        return side + "foot"
    return "torso"


def default_cache_dir() -> Path:
    """``$ANNY_CACHE_DIR``; else ``data/cache/anny`` of the checkout this package runs from (so
    commands run from any folder share the project's cache); else ``~/.cache/texturepose/anny``."""
    if os.environ.get("ANNY_CACHE_DIR"):
        return Path(os.environ["ANNY_CACHE_DIR"])
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file():
        return checkout / "data" / "cache" / "anny"
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "texturepose" / "anny"


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """File descriptor 2 to /dev/null (native libraries write there directly, past sys.stderr)."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _init_warp_quietly(warp) -> None:
    """Start Warp's runtime now. Without a CUDA driver its native code prints "Warp CUDA warning:
    Could not find or load the NVIDIA CUDA driver" on every command: on a CPU machine that is
    expected, not a warning to act on, so there it is silenced (with CUDA, nothing is)."""
    if torch.cuda.is_available():
        return
    with _native_stderr_silenced():
        warp.init()


def load_native_anny(cache_dir: str | os.PathLike | None = None):
    """Anny's own model in float32 (its first construction builds a cache, ~40-85 s)."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    try:
        import warp

        # Anny's skinning runs on NVIDIA Warp, whose start-up banner (devices, kernel cache)
        # and module-load lines are info messages on stdout of every command; warnings still show.
        if warp.config.log_level < logging.WARNING:
            warp.config.log_level = logging.WARNING
        _init_warp_quietly(warp)
    except ImportError:  # pragma: no cover - anny brings warp
        pass
    try:
        import anny
        from anny.paths import set_anny_cache_path
    except ImportError as e:  # pragma: no cover - anny is a hard dependency
        raise BodyModelError(
            "the 'anny' package is not installed: pip install anny==0.6.2 (it ships its assets)"
        ) from e
    set_anny_cache_path(cache)
    if not any(cache.iterdir()):
        log.info("building Anny's cache under %s once (about 1-2 minutes, 1.7 GB RAM)", cache)
    return anny.Anny().float()


class AnnyBody(BodyModel):
    """The default body model. See the module docstring for the conventions."""

    name = "anny"
    shape_bounds = (0.0, 1.0)  # phenotype values

    def __init__(self, cache_dir: str | os.PathLike | None = None) -> None:
        super().__init__()
        from anny.keypoints import KeypointsRegressor

        from texturepose.body.anny_keypoints import anny_keypoint_regressor

        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.native = load_native_anny(self.cache_dir)
        for p in self.native.parameters():
            p.requires_grad_(False)
        labels = list(self.native.bone_labels)
        missing = [b for b in ANNY_BONES if b not in labels]
        if missing:
            raise BodyModelError(f"Anny {self.native} lacks bones {missing}; expected anny==0.6.2")
        self.joint_names = ANNY_BONES
        self.num_shape = len(self.native.phenotype_labels)
        self.shape_names = tuple(self.native.phenotype_labels)
        self.register_buffer("bone_index", torch.tensor([labels.index(b) for b in ANNY_BONES]))
        self.register_buffer("_eye4", torch.eye(4))
        self.register_buffer("mean_shape", torch.full((self.num_shape,), 0.5))
        self.register_buffer("to_canonical", ANNY_TO_CANONICAL.clone())
        self.register_buffer("faces", self.native.get_triangular_faces().long().clone())
        self.register_buffer("uv", self.native.texture_coordinates.float())
        self.register_buffer("face_uv", self.native.face_texture_coordinate_indices.long())
        flip = flip_permutation(ANNY_BONES)
        self.register_buffer("flip_joint_permutation", torch.from_numpy(flip))
        self.part_names = PART_NAMES
        self.register_buffer("face_parts", self._face_parts(labels))
        coco = KeypointsRegressor.coco(self.native)
        weights = anny_keypoint_regressor(self, coco, self.cache_dir)
        self.register_buffer("keypoint_weights", weights)  # (K, V), dense, for reference
        self.register_buffer("keypoint_mask", weights.abs().sum(1) > 0)
        # Only a few thousand vertices carry weight: regress from those alone (4-5x cheaper).
        used = torch.nonzero(weights.abs().sum(0) > 0)[:, 0]
        self.register_buffer("_kp_vertices", used)
        self.register_buffer("_kp_weights", weights[:, used].contiguous())
        # Derived layouts for _regress_keypoints: the weights transposed (U, K), and the used
        # vertices' coordinate offsets in a (V * 3) row of the vertices, by axis (x of every
        # used vertex, then y, then z) and by vertex (x, y, z of each).
        self.register_buffer("_kp_weights_t", self._kp_weights.t().contiguous(), persistent=False)
        axis = torch.arange(3)
        self.register_buffer("_kp_offsets_by_axis", (used[None] * 3 + axis[:, None]).reshape(-1),
                             persistent=False)
        self.register_buffer("_kp_offsets_by_vertex",
                             (used[:, None] * 3 + axis[None]).reshape(-1), persistent=False)
        self._keypoint_path = None  # built on first use of keypoints()
        # False: the full model computes keypoints (the fast path failed its check, or a
        # benchmark asks for the full model); None: not decided yet.
        self.fast_keypoints: bool | None = None

    @property
    def num_vertices(self) -> int:
        return int(self.native.template_vertices.shape[0])

    def sample_shapes(self, n: int, seed: int = 0) -> torch.Tensor:
        """Adult phenotypes from Anny's own population model (``SimpleShapeDistribution``:
        height, weight, muscle and proportions conditioned on age and gender, calibrated on WHO
        growth data), morphological ages uniform in [ADULT_AGES]."""
        from anny.shape_distribution import SimpleShapeDistribution

        lo, hi = ADULT_AGES
        ages = torch.distributions.Uniform(torch.tensor(lo, dtype=torch.float64),
                                           torch.tensor(hi, dtype=torch.float64))
        # The distribution reads only these three attributes of the model it is given.
        model = SimpleNamespace(dtype=torch.float64, device=torch.device("cpu"),
                                phenotype_labels=self.native.phenotype_labels)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            _, pheno = SimpleShapeDistribution(model, ages).sample(n)
        return torch.stack([pheno[k] for k in self.shape_names], 1).float().clamp(0.0, 1.0)

    def keypoints(self, rotmats: torch.Tensor, shape: torch.Tensor,
                  shape_index: torch.Tensor | None = None) -> torch.Tensor:
        """The keypoints alone through :class:`AnnyKeypointPath` (no mesh skinning), checked once
        against the full model; the full model if that check fails. ``shape_index``: see
        :meth:`BodyModel.keypoints`."""
        self._check_inputs(rotmats, shape if shape_index is None else shape[shape_index])
        if self.fast_keypoints is None or (self.fast_keypoints and self._keypoint_path is None):
            from texturepose.body.anny_fast_keypoints import AnnyKeypointPath

            path = AnnyKeypointPath(self)
            err = path.max_error()
            self.fast_keypoints = err <= FAST_KEYPOINT_TOLERANCE
            if self.fast_keypoints:
                self._keypoint_path = path
            else:
                log.warning("Anny's fast keypoint path differs from the full model by %.3g m "
                            "(anny changed?): using the full model (slower)", err)
        if not self.fast_keypoints:
            return super().keypoints(rotmats, shape, shape_index)
        return self._keypoint_path(rotmats, shape, shape_index)

    def kinematic_keypoint_path(self) -> torch.nn.Module | None:
        """The checked skinning-free :class:`AnnyKeypointPath` (None when it failed its check
        against the full model or ``fast_keypoints`` is off)."""
        with torch.no_grad():  # builds and checks the path on first use
            self.keypoints(self.rest_rotmats(1), self.mean_shape[None])
        return self._keypoint_path if self.fast_keypoints else None

    def _face_parts(self, labels: list[str]) -> torch.Tensor:
        w = self.native.vertex_bone_weights
        idx = self.native.vertex_bone_indices
        dominant = idx.gather(1, w.argmax(1, keepdim=True))[:, 0]  # (V,) bone per vertex
        vertex_part = torch.tensor([PART_NAMES.index(_part_of_bone(labels[b])) for b in dominant])
        face_vertex_parts = vertex_part[self.faces]  # (F, 3): majority vote, ties -> first vertex
        same12 = face_vertex_parts[:, 1] == face_vertex_parts[:, 2]
        return torch.where(same12, face_vertex_parts[:, 1], face_vertex_parts[:, 0])

    def native_pose(self, rotmats: torch.Tensor) -> torch.Tensor:
        """(B, 24, 3, 3) canonical-frame rotations -> Anny's (B, 104, 4, 4) local-ref deltas.

        The root's delta also carries the Anny -> canonical frame change (the root sits at the
        origin and its delta rotates the whole body about it), so Anny's output vertices and
        bone poses come out directly in the canonical frame with no extra pass over vertices.
        """
        b = rotmats.shape[0]
        c = self.to_canonical.to(rotmats)
        local = c.T @ rotmats @ c  # the same rotations expressed in Anny's frame
        root = rotmats[:, 0] @ c  # = C (C^T R C): rotate in Anny's frame, then change frame
        full = self._eye4.to(rotmats).expand(b, len(self.native.bone_labels), 4, 4).clone()
        full[:, self.bone_index[1:], :3, :3] = local[:, 1:]
        full[:, self.bone_index[0], :3, :3] = root
        return full

    def native_forward(self, rotmats: torch.Tensor, shape: torch.Tensor) -> dict:
        """Anny's own output dict for our parameters (already in the canonical frame)."""
        return self.native(self.native_pose(rotmats), shape)

    def _forward(self, rotmats: torch.Tensor, shape: torch.Tensor) -> BodyOutput:
        vertices = self.native_forward(rotmats, shape)["vertices"]
        return BodyOutput(vertices=vertices, keypoints=self._regress_keypoints(vertices))

    def _regress_keypoints(self, vertices: torch.Tensor) -> torch.Tensor:
        """``(B, K, 3)`` keypoints from the used vertices: one (K, U) x (U, 3B) GEMM (much faster
        on CPU than a broadcast batched matmul), whose column ``3b + c`` is axis c of batch b.

        The operand comes from one 2D gather from the flat vertices (its backward is a 2D
        scatter, much cheaper than that of indexing (B, V, 3)), laid out so that the product is
        bit for bit that of the former ``vertices[:, used]`` path (checked with this build's MKL
        at batches 1-40 and 64-256) and cheap. From 4 meshes on it is gathered by axis as
        (3B, U) and handed to BLAS transposed, with no (U, B, 3) strided copy (half of the
        wrapper's cost at batch 128). For one mesh, (3, U) x (U, K) is the same product and 4x
        faster than the skinny (K, U) x (U, 3). For 2 and 3 meshes only the former layout sums
        in the same order."""
        b = vertices.shape[0]
        flat = vertices.reshape(b, -1)
        if b == 1:
            used = flat.index_select(1, self._kp_offsets_by_axis).view(3, -1)
            return (used @ self._kp_weights_t).t().unsqueeze(0)
        if b >= 4:
            used = flat.index_select(1, self._kp_offsets_by_axis).view(3 * b, -1).t()
        else:
            used = flat.index_select(1, self._kp_offsets_by_vertex).view(b, -1, 3)
            used = used.transpose(0, 1).reshape(used.shape[1], 3 * b)
        keypoints = (self._kp_weights @ used).view(-1, b, 3)
        return keypoints.transpose(0, 1)


