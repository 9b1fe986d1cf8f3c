"""Texture consistency (TexturePose, Pavlakos et al. 2019): ``|| V_ij * (A_i - A_j) ||``.

``A_i`` and ``A_j`` are texture maps of the same person sampled from two images through their
predicted meshes (:func:`texturepose.render.texture.sample_texture`), ``V_ij = V_i * V_j`` the
texels visible in both. As in the paper, the visibility is a constant (it is detached: a depth
test has no useful gradient) and the image colours are data, so the loss moves the meshes (pose,
shape, camera) through the texels' sampling positions only. Both maps carry gradients by default
(the loss is symmetric in ``i`` and ``j``: each prediction is pulled towards the other);
``detach_target=True`` makes ``A_j`` a fixed target instead, for a one-sided variant.
"""

from __future__ import annotations

import torch

KINDS = ("l1", "l2", "charbonnier")


def texture_consistency_loss(
    tex_i: torch.Tensor,
    vis_i: torch.Tensor,
    tex_j: torch.Tensor,
    vis_j: torch.Tensor,
    kind: str = "l1",
    detach_target: bool = False,
    eps: float = 1e-3,
) -> torch.Tensor:
    """Mean over pairs of the per-pair texture disagreement on co-visible texels.

    Args:
        tex_i, tex_j: (B, C, R, R) texture maps of the two images of each pair.
        vis_i, vis_j: (B, R, R) visibilities in [0, 1] (weights with grazing down-weighting).
        kind: ``l1`` (|d|, default), ``l2`` (d^2) or ``charbonnier`` (sqrt(d^2 + eps^2) - eps).

    Each pair's term is the channel-mean penalty summed over texels weighted by ``V_ij`` and
    divided by the sum of ``V_ij`` (the number of texels visible in both); a pair with no
    co-visible texel contributes exactly 0 (and finite, zero gradients). Returns a scalar.
    """
    if tex_i.shape != tex_j.shape or tex_i.dim() != 4:
        raise ValueError(f"texture maps must both be (B, C, R, R), got {tuple(tex_i.shape)} "
                         f"and {tuple(tex_j.shape)}")
    expected = (tex_i.shape[0], *tex_i.shape[2:])
    if vis_i.shape != expected or vis_j.shape != expected:
        raise ValueError(f"visibilities must be {expected}, got {tuple(vis_i.shape)} and "
                         f"{tuple(vis_j.shape)}")
    if kind not in KINDS:
        raise ValueError(f"texture loss kind must be one of {KINDS}, got {kind!r}")
    v = (vis_i * vis_j).detach().to(tex_i.dtype)
    if detach_target:
        tex_j = tex_j.detach()
    diff = tex_i - tex_j
    if kind == "l1":
        pen = diff.abs()
    elif kind == "l2":
        pen = diff.square()
    else:
        pen = (diff.square() + eps * eps).sqrt() - eps
    # Zero the invisible texels before reducing so NaN/inf colours there cannot leak in.
    per_texel = torch.where(v > 0, pen.mean(dim=1), torch.zeros_like(v))
    num = (per_texel * v).flatten(1).sum(1)
    den = v.flatten(1).sum(1)
    per_pair = num / den.clamp(min=1e-8) * (den > 0)
    return per_pair.mean()
