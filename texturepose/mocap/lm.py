"""The ``lm`` method of the mocap fit: per-frame Levenberg-Marquardt on the joint rotations and
translation with an analytic keypoint Jacobian (no backward pass).

It needs a body whose keypoint path exposes its bone transforms
(:meth:`BodyModel.kinematic_keypoint_path`: Anny's skinning-free path); :mod:`texturepose.mocap.fit`
falls back to L-BFGS when there is none.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch

from texturepose.body.base import BodyModel
from texturepose.geometry.rotations import axis_angle_to_matrix

if TYPE_CHECKING:
    from texturepose.mocap.fit import FitConfig

log = logging.getLogger(__name__)


def open_keypoint_path(body: BodyModel) -> torch.nn.Module | None:
    """The body's skinning-free keypoint path if it exposes its bone transforms (Anny's
    :class:`~texturepose.body.anny_fast_keypoints.AnnyKeypointPath`), else None: the ``lm``
    method then fits the poses with L-BFGS like ``batched``."""
    path = body.kinematic_keypoint_path()
    if path is not None and all(
            hasattr(path, a) for a in ("bone_transforms", "rest_bone_poses", "pair_pos",
                                       "slot_pos", "joint_of_slot", "parent_pos")):
        return path
    log.warning("%s has no open keypoint path: mocap.fit.method lm fits the poses with L-BFGS "
                "(iters evaluations, as method batched)", body.name)
    return None


class KinematicKeypoints:
    """The keypoint path opened up for fixed per-clip shapes: keypoints plus the bone world
    transforms they pass through. Each keypoint is a sum of points rigidly attached to bones
    (``(keypoint, bone)`` pairs), so turning joint ``j`` by a small world rotation ``d`` moves
    every pair below ``j`` by ``d x (p - a o_j)`` (``o_j``: the joint's pivot, ``a``: the pair's
    homogeneous weight): the Jacobian is analytic and the ``lm`` method needs no backward pass.
    Notation as in :meth:`AnnyKeypointPath.bone_transforms`."""

    def __init__(self, path: torch.nn.Module, shapes: torch.Tensor) -> None:
        self.path = path
        body = path.body[0]
        with torch.no_grad():  # the shape-dependent part, once instead of per evaluation
            coeffs = path.blendshape_coefficients(shapes)
            self.r, self.h = path.rest_bone_poses(coeffs)  # (C, N, 3, 3), (C, N, 3)
            a = path.a0.to(shapes)
            self.hom = a[:, 3]  # (P,)
            self.xyz = a[None, :, :3] + (coeffs @ path.ad.to(shapes).flatten(1)).view(
                -1, *a[:, :3].shape)  # (C, P, 3)
        par = path.parent_pos.tolist()
        n, nj = len(par), body.num_joints
        below = torch.zeros(n, n, dtype=torch.bool)  # below[a, q]: bone q is a or under a
        for q in range(n):
            a_ = q
            while True:
                below[a_, q] = True
                if a_ == 0:
                    break
                a_ = par[a_]
        jpos = torch.full((nj,), -1, dtype=torch.long)  # each joint's bone position
        jpos[0] = 0
        jpos[path.joint_of_slot.cpu()] = path.slot_pos.cpu()
        driven = jpos >= 0  # a joint whose bone no keypoint depends on has no columns
        self.jpos = jpos.clamp(min=0).to(shapes.device)
        self.ppos = path.parent_pos[self.jpos]  # the parent bone of each joint's bone
        m = below[jpos.clamp(min=0)][:, path.pair_pos.cpu()] & driven[:, None]  # (J, P)
        onehot = torch.zeros(path.num_keypoints, len(path.pair_pos), dtype=torch.bool)
        onehot[path.pair_keypoint.cpu(), torch.arange(len(path.pair_pos))] = True
        self.mix = (onehot[:, None] & m[None]).to(shapes)  # (K, J, P)
        u = path.ref.to(shapes)
        c = body.to_canonical.to(shapes)
        # G_j = Wr_parent U_parent^T C^T maps joint j's rotation axis to the world; root: U_0^T.
        self.g_right = u[self.ppos].transpose(-1, -2) @ c.T  # (J, 3, 3)
        self.g_root = u[0].T

    def forward(self, rot: torch.Tensor, index: torch.Tensor
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Keypoints ``(B, K, 3)`` and what :meth:`jacobian` needs."""
        path = self.path
        r, h, xyz = self.r[index], self.h[index], self.xyz[index]
        t_rot, t_t = path.bone_transforms(rot, r, h)
        pairs = ((t_rot[:, path.pair_pos] @ xyz[..., None])[..., 0]
                 + t_t[:, path.pair_pos] * self.hom[None, :, None])  # (B, P, 3)
        kp = rot.new_zeros(len(rot), path.num_keypoints, 3).index_add(1, path.pair_keypoint,
                                                                        pairs)
        # World rotations of the joints' parent bones and pivots of the joints' bones.
        wr_parent = t_rot[:, self.ppos] @ r[:, self.ppos]
        pivot = t_t[:, self.jpos] + (t_rot[:, self.jpos] @ h[:, self.jpos, :, None])[..., 0]
        return kp, (pairs, wr_parent, pivot)

    def jacobian(self, state: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                 keys: torch.Tensor) -> torch.Tensor:
        """``(B, k, 3, J, 3)``: keypoints ``keys`` by the joints' rotation vectors ``e`` of the
        left update ``R_j <- exp(e) R_j``."""
        pairs, wr_parent, pivot = state
        mix = self.mix[keys]  # (k, J, P)
        k, nj, p = mix.shape
        s = (mix.reshape(k * nj, p) @ pairs).view(-1, k, nj, 3)
        v = s - (mix @ self.hom)[None, ..., None] * pivot[:, None]  # (B, k, J, 3)
        g = wr_parent @ self.g_right  # (B, J, 3, 3)
        g[:, 0] = self.g_root
        # d kp = (G e) x v: column i is (G e_i) x v
        cols = torch.linalg.cross(g.transpose(-1, -2)[:, None], v[..., None, :].expand(
            -1, -1, -1, 3, -1))  # (B, k, J, i, 3)
        return cols.permute(0, 1, 4, 2, 3)


def lm_poses(kin: KinematicKeypoints, tgt: torch.Tensor, w: torch.Tensor,
              index: torch.Tensor, rot: torch.Tensor, trans: torch.Tensor, cfg: FitConfig
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Levenberg-Marquardt on every frame separately (batched): each frame has its own
    damping and stops on its own when its cost no longer falls by ``cfg.tol`` (relative);
    only the frames still moving are evaluated. Cost per frame: the keypoint error plus the
    pose prior, as in :func:`_optimise`."""
    b, nj = rot.shape[:2]
    dev, dtype = tgt.device, tgt.dtype
    keys = torch.nonzero(w.sum(0) > 0)[:, 0]
    tgt_k, sw = tgt[:, keys], w[:, keys].sqrt()
    rot, trans = rot.clone(), trans.clone()
    eye = torch.eye(3, dtype=dtype, device=dev)
    pp = cfg.pose_prior

    def cost_of(kp: torch.Tensor, r: torch.Tensor, t: torch.Tensor, f: torch.Tensor
                ) -> torch.Tensor:
        e = ((kp[:, keys] + t[:, None] - tgt_k[f]) ** 2).sum(-1) * w[f][:, keys]
        return e.sum(-1) + pp * ((r[:, 1:] - eye) ** 2).sum((1, 2, 3))

    with torch.no_grad():
        kp, state = kin.forward(rot, index)
        cost = cost_of(kp, rot, trans, torch.arange(b, device=dev))
        lam = torch.full((b,), cfg.lm_damping, dtype=torch.float64, device=dev)
        active = torch.ones(b, dtype=torch.bool, device=dev)
        d = nj * 3 + 3
        prior_h = torch.zeros(d, dtype=torch.float64, device=dev)
        prior_h[3: nj * 3] = 2.0 * pp  # prior residual sqrt(pp) (R_j - I), j >= 1
        for _ in range(cfg.iters):
            f = torch.nonzero(active)[:, 0]
            if len(f) == 0:
                break
            st = tuple(x[f] for x in state)
            jac = kin.jacobian(st, keys).flatten(3)  # (n, k, 3, 3J)
            jac = torch.cat([jac, eye.expand(len(f), len(keys), 3, 3)], -1)
            jac = (jac * sw[f][..., None, None]).flatten(1, 2).double()  # (n, 3k, D)
            res = ((kp[f][:, keys] + trans[f][:, None] - tgt_k[f]) * sw[f][..., None])
            grad = (jac.transpose(1, 2) @ res.flatten(1).double()[..., None])[..., 0]
            r = rot[f, 1:]
            grad[:, 3: nj * 3] += pp * torch.stack(
                [r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0],
                 r[..., 1, 0] - r[..., 0, 1]], -1).flatten(1).double()
            hess = jac.transpose(1, 2) @ jac
            hess.diagonal(dim1=1, dim2=2).add_(prior_h)
            diag = hess.diagonal(dim1=1, dim2=2)
            damped = hess + torch.diag_embed(lam[f, None] * diag + 1e-12)
            chol, info = torch.linalg.cholesky_ex(damped)
            step = -torch.cholesky_solve(grad[..., None], chol)[..., 0]
            step[info > 0] = 0.0
            step = step.to(dtype)
            new_rot = axis_angle_to_matrix(step[:, : nj * 3].view(-1, nj, 3)) @ rot[f]
            new_trans = trans[f] + step[:, nj * 3:]
            new_kp, new_state = kin.forward(new_rot, index[f])
            new_cost = cost_of(new_kp, new_rot, new_trans, f)
            ok = (new_cost < cost[f]) & (info == 0)
            gain = (cost[f] - new_cost) / cost[f].clamp(min=1e-12)
            fo = f[ok]
            rot[fo], trans[fo], kp[fo] = new_rot[ok], new_trans[ok], new_kp[ok]
            for x, y in zip(state, new_state, strict=True):
                x[fo] = y[ok]
            cost[fo] = new_cost[ok]
            lam[f] = torch.where(ok, lam[f] / 3.0, lam[f] * 4.0).clamp(1e-9, 1e9)
            # Converged: an accepted step that barely helps, or no step helps any more.
            active[f[(ok & (gain < cfg.tol)) | (lam[f] >= 1e9)]] = False
    return rot, trans
