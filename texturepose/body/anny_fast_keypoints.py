"""Anny's superset keypoints without blending or skinning the mesh.

The 2D keypoint loss, the IEF feedback and the motion-capture fit need keypoints only. Anny's
keypoints are fixed vertex combinations ``W`` (K x V), its skinning is linear,
``v = sum_b s_vb T_b [r_v; 1]``, and its rest vertices are linear in the blend-shape coefficients,
``r = r0 + sum_a c_a D_a``. Hence

    kp_k = sum_b T_b (A0_kb + sum_a c_a A_akb),
    A0_kb = sum_v W_kv s_vb [r0_v; 1],   A_akb = sum_v W_kv s_vb [D_av; 0],

with ``A0`` and ``A`` computed once, and only for the (keypoint, bone) pairs with weight (234 of
30 x 104). The bone transforms ``T_b`` come from Anny's forward kinematics in its ``local-ref``
parameterisation (``anny.utils.kinematics.forward_kinematic``), re-done here with matrix
products over the 70 bones that carry a keypoint or an ancestor of one (Anny composes 3x3
matrices by broadcasting, which dominates its cost on a CPU). A call therefore costs a few
small batched products instead of blending and skinning 13,718 vertices (``bench/body.py``).
Exact up to float32 rounding and differentiable in pose and shape; :meth:`max_error` checks it
against the full model, and :class:`~texturepose.body.anny_model.AnnyBody` falls back to the full
model if the check fails (a changed ``anny`` release).
"""

from __future__ import annotations

import roma
import torch

from texturepose.body.base import BodyModel


class AnnyKeypointPath(torch.nn.Module):
    """Keypoints ``(B, K, 3)`` of an :class:`AnnyBody` from ``rotmats (B, J, 3, 3)`` and
    ``shape (B, S)`` (or ``(S,)``, shared), in the canonical frame like ``body(...).keypoints``."""

    def __init__(self, body: BodyModel) -> None:
        super().__init__()
        native = body.native
        if native.pose_parameterization != "local-ref":
            raise NotImplementedError(
                f"Anny pose parameterisation {native.pose_parameterization!r}: the fast keypoint "
                "path implements 'local-ref' only")
        self.body = [body]  # not a submodule: the body owns this path, not the reverse
        dtype = body.mean_shape.dtype
        pairs, a0, ad = _pair_weights(body)
        self.num_keypoints = int(body.keypoint_weights.shape[0])

        # The bones that matter, parents before children, and where each one's parent sits.
        parents = [int(p) for p in native.bone_parents]
        needed: set[int] = set()
        for b in pairs[:, 1].tolist():
            while b >= 0 and b not in needed:
                needed.add(b)
                b = parents[b]
        depth = {b: _depth(b, parents) for b in needed}
        order = sorted(needed, key=lambda b: (depth[b], b))
        if order[0] != 0 or depth[order[0]] != 0:
            raise NotImplementedError("the fast keypoint path expects Anny's root at bone 0")
        pos = {b: i for i, b in enumerate(order)}
        self.levels = []  # (first, last) positions of each depth level after the root
        for d in range(1, max(depth.values()) + 1):
            at = [pos[b] for b in order if depth[b] == d]
            self.levels.append((min(at), max(at) + 1))
        self.register_buffer("bones", torch.tensor(order), persistent=False)
        self.register_buffer("parent_pos", torch.tensor([pos[parents[b]] if b else 0
                                                         for b in order]), persistent=False)
        # Regressed joint j drives bone bone_index[j]; joints whose bone no keypoint depends on
        # cannot move a keypoint and are left out.
        index = body.bone_index.tolist()
        drives = [(j, pos[b]) for j, b in enumerate(index) if b in pos]
        if not drives or drives[0] != (0, 0):
            raise NotImplementedError("the fast keypoint path expects joint 0 to be Anny's root")
        self.register_buffer("joint_of_slot", torch.tensor([j for j, _ in drives[1:]]),
                             persistent=False)
        self.register_buffer("slot_pos", torch.tensor([p for _, p in drives[1:]]),
                             persistent=False)
        u = native.reference_bone_orientations
        self.register_buffer("ref", u[order].to(dtype), persistent=False)
        self.register_buffer("pair_keypoint", pairs[:, 0].clone(), persistent=False)
        self.register_buffer("pair_pos", torch.tensor([pos[b] for b in pairs[:, 1].tolist()]),
                             persistent=False)
        self.register_buffer("a0", a0.to(dtype), persistent=False)  # (P, 4)
        self.register_buffer("ad", ad.to(dtype), persistent=False)  # (A, P, 3)

    def blendshape_coefficients(self, shape: torch.Tensor) -> torch.Tensor:
        native = self.body[0].native
        _, pheno, local, face = native.get_tensor_inputs(None, shape, None, None)
        return native._get_phenotype_blendshape_coefficients(pheno, local, face)

    def rest_bone_poses(self, coeffs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rest rotations ``(B, N, 3, 3)`` and heads ``(B, N, 3)`` of the needed bones for
        blend-shape coefficients ``(B, A)``: what Anny's 'cached' bone orientation computes,
        without its rest vertices and the other bones (other settings take Anny's own path)."""
        native = self.body[0].native
        if native.bone_orientation != "cached" or native.rest_orientation_refiner is not None:
            rest = native.get_rest_model(coeffs)["rest_bone_poses"][:, self.bones]
            return rest[..., :3, :3], rest[..., :3, 3]
        bones = self.bones
        heads = native.template_bone_heads[bones][None] + torch.einsum(
            "cpd,bc->bpd", native.bone_heads_blendshapes[:, bones], coeffs)
        m = native.bone_template_orientation_matrices[bones][None] + torch.einsum(
            "ba,akij->bkij", coeffs, native.bone_orientation_blendshapes[:, bones])
        rot = roma.special_procrustes(m)
        if native.root_identity_orientation:  # the root is position 0
            eye = torch.eye(3, dtype=rot.dtype, device=rot.device).expand_as(rot[:, :1])
            rot = torch.cat([eye, rot[:, 1:]], 1)
        return rot, heads

    def bone_transforms(self, rotmats: torch.Tensor, r: torch.Tensor, h: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """Skinning transforms ``T = W P^-1`` of the needed bones, as rotations ``(B, N, 3, 3)``
        and translations ``(B, N, 3)``, for canonical-frame joint rotations and the needed
        bones' rest rotations ``r`` and heads ``h`` (batch B or 1). Notation as in
        ``anny.utils.kinematics.forward_kinematic``:
        rest ``[R | h]``, reference orientations ``U``, deltas ``D`` (identity for the bones
        that are not regressed), ``W_c = W_p K_c`` with
        ``K_c = [U_p^T D_c U_c | U_p^T A_p (h_c - h_p)]``, ``A_p = U_p R_p^T`` (``A_0 = I``),
        and the root ``W_0 = [U_0^T D_0 U_0 | 0]``."""
        body = self.body[0]
        u = self.ref.to(rotmats)
        par = self.parent_pos
        b = rotmats.shape[0]
        c = body.to_canonical.to(rotmats)
        deltas = u.expand(b, -1, -1, -1).clone()  # D U with D = I
        # AnnyBody.native_pose: joints in Anny's frame, the frame change folded into the root.
        local = c.T @ rotmats[:, self.joint_of_slot] @ c
        deltas[:, self.slot_pos] = local @ u[self.slot_pos]
        deltas[:, 0] = rotmats[:, 0] @ c @ u[0]
        a = u @ r.transpose(-1, -2)
        a = torch.cat([torch.eye(3, dtype=a.dtype, device=a.device).expand_as(a[:, :1]),
                       a[:, 1:]], 1)
        q = (a[:, par] @ (h - h[:, par])[..., None])[..., 0]  # (B1, N, 3), root 0
        u_pt = u[par].transpose(-1, -2)
        k_rot = u_pt @ deltas
        k_t = (u_pt @ q[..., None])[..., 0].expand(b, -1, -1)
        w_rot = [u[0].T @ deltas[:, :1]]
        w_t = [torch.zeros_like(k_t[:, :1])]
        for first, last in self.levels:
            p = par[first:last]
            pos = torch.cat(w_rot, 1), torch.cat(w_t, 1)
            pr, pt = pos[0][:, p], pos[1][:, p]
            w_rot.append(pr @ k_rot[:, first:last])
            w_t.append((pr @ k_t[:, first:last, :, None])[..., 0] + pt)
        wr, wt = torch.cat(w_rot, 1), torch.cat(w_t, 1)
        t_rot = wr @ r.transpose(-1, -2)
        return t_rot, wt - (t_rot @ h[..., None])[..., 0]

    def forward(self, rotmats: torch.Tensor, shape: torch.Tensor,
                shape_index: torch.Tensor | None = None) -> torch.Tensor:
        """``shape`` is ``(B, S)``, ``(S,)`` (shared) or, with ``shape_index (B,)``, ``(C, S)``
        of which row ``b`` takes ``shape[shape_index[b]]`` (e.g. one shape per mocap clip: the
        rest skeleton is then computed C times, not B)."""
        b = rotmats.shape[0]
        if shape.dim() == 1:
            shape = shape[None]
        coeffs = self.blendshape_coefficients(shape)  # (B, C or 1 rows, A)
        r, h = self.rest_bone_poses(coeffs)
        a = self.a0.to(rotmats)  # (P, 4)
        xyz = a[None, :, :3] + (coeffs @ self.ad.to(rotmats).flatten(1)).view(-1, *a[:, :3].shape)
        if shape_index is not None:
            r, h, xyz = r[shape_index], h[shape_index], xyz[shape_index]
        t_rot, t_t = self.bone_transforms(rotmats, r, h)
        per_pair = ((t_rot[:, self.pair_pos] @ xyz[..., None])[..., 0]
                    + t_t[:, self.pair_pos] * a[None, :, 3:])  # (B, P, 3)
        out = rotmats.new_zeros(b, self.num_keypoints, 3)
        return out.index_add(1, self.pair_keypoint, per_pair)

    @torch.no_grad()
    def max_error(self, seed: int = 0) -> float:
        """Largest difference (metres) from the full model on random poses and shapes."""
        body = self.body[0]
        g = torch.Generator().manual_seed(seed)
        rot = roma.rotvec_to_rotmat(torch.randn(4, body.num_joints, 3, generator=g) * 0.4)
        shape = torch.rand(4, body.num_shape, generator=g)
        rot, shape = rot.to(body.mean_shape), shape.to(body.mean_shape)
        return float((body(rot, shape).keypoints - self(rot, shape)).abs().max())


def _depth(bone: int, parents: list[int]) -> int:
    d = 0
    while parents[bone] >= 0:
        bone, d = parents[bone], d + 1
    return d


@torch.no_grad()
def _pair_weights(body: BodyModel) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The (keypoint, bone) pairs with weight ``(P, 2)``, their ``A0 (P, 4)`` and ``A (A, P, 3)``
    (see the module docstring), in float64."""
    native = body.native
    weights = body.keypoint_weights.double()
    nb = len(native.bone_labels)
    skin = torch.zeros(body.num_vertices, nb, dtype=torch.float64)
    skin.scatter_add_(1, native.vertex_bone_indices.long(), native.vertex_bone_weights.double())
    template = native.template_vertices.double()
    deltas = native.blendshapes.double()  # (A, V, 3)
    k_count = weights.shape[0]
    a0 = torch.zeros(k_count, nb, 4, dtype=torch.float64)
    ad = torch.zeros(deltas.shape[0], k_count, nb, 3, dtype=torch.float64)
    for k in range(k_count):
        v = torch.nonzero(weights[k])[:, 0]
        if len(v) == 0:
            continue
        ws = weights[k, v, None] * skin[v]  # (n, NB)
        a0[k, :, :3] = ws.T @ template[v]
        a0[k, :, 3] = ws.sum(0)
        ad[:, k] = torch.einsum("vn,avj->anj", ws, deltas[:, v])
    pairs = torch.nonzero(a0.abs().sum(-1) > 0)
    return pairs, a0[pairs[:, 0], pairs[:, 1]], ad[:, pairs[:, 0], pairs[:, 1]]
