"""Render people directly into their square crops: anti-aliased, shaded, textured, composited.

For each sample (a posed mesh seen by a calibrated camera):

1. The superset keypoints are projected with the full-frame camera; the crop box is the square
   around them enlarged by ``margin`` (SPIN's 1.2), as
   :func:`texturepose.geometry.crops.box_from_keypoints` does.
2. The crop's own intrinsics (the full-frame ``K`` followed by the crop's scale and offset) are
   used to rasterise the mesh at ``supersample x crop_res`` pixels.
3. Colour = texture (UVs interpolated per pixel, ``grid_sample``) x Lambert shading with
   smoothly interpolated vertex normals and an ambient term; the background is the crop of the
   camera's full-frame background; the composite is area-downsampled by ``supersample``
   (anti-aliasing of the silhouette and the texture).
4. Mask: the rasterised coverage averaged over each output pixel's ``supersample^2`` samples,
   thresholded at one half.
5. Keypoint visibility (self-occlusion), see :data:`VISIBILITY_RULES`: a keypoint is *visible*
   when the surface rasterised at its (supersampled) pixel belongs to one of the parts around
   that keypoint and is not nearer than the keypoint's depth minus a per-keypoint tolerance (the
   joint centres lie inside the body, so the own limb's front surface is always a little
   nearer). A keypoint projecting onto the background has nothing in front of it: visible.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from texturepose.body.base import BodyModel
from texturepose.geometry.cameras import project
from texturepose.geometry.crops import crop_matrix
from texturepose.keypoints import SUPERSET
from texturepose.render.rasterize import rasterize

#: keypoint -> (body parts whose surface may be in front of it while it is seen, depth tolerance
#: in metres ~ the depth of the joint centre below that surface).
VISIBILITY_RULES: dict[str, tuple[tuple[str, ...], float]] = {
    "r_ankle": (("r_shin", "r_foot"), 0.08), "l_ankle": (("l_shin", "l_foot"), 0.08),
    "r_knee": (("r_thigh", "r_shin"), 0.10), "l_knee": (("l_thigh", "l_shin"), 0.10),
    "r_hip": (("pelvis", "r_thigh", "torso"), 0.15),
    "l_hip": (("pelvis", "l_thigh", "torso"), 0.15),
    "r_wrist": (("r_forearm", "r_hand"), 0.08), "l_wrist": (("l_forearm", "l_hand"), 0.08),
    "r_elbow": (("r_upperarm", "r_forearm"), 0.10), "l_elbow": (("l_upperarm", "l_forearm"), 0.10),
    "r_shoulder": (("torso", "r_upperarm", "neck"), 0.15),
    "l_shoulder": (("torso", "l_upperarm", "neck"), 0.15),
    "neck": (("neck", "torso", "head"), 0.15), "head_top": (("head",), 0.05),
    "pelvis": (("pelvis", "torso", "l_thigh", "r_thigh"), 0.15),
    "thorax": (("torso", "neck"), 0.15), "spine": (("torso", "pelvis"), 0.15),
    "jaw": (("head", "neck"), 0.10), "head": (("head",), 0.12),
    "nose": (("head",), 0.04), "l_eye": (("head",), 0.04), "r_eye": (("head",), 0.04),
    "l_ear": (("head",), 0.05), "r_ear": (("head",), 0.05),
    "l_big_toe": (("l_foot",), 0.05), "l_small_toe": (("l_foot",), 0.05),
    "l_heel": (("l_foot",), 0.05), "r_big_toe": (("r_foot",), 0.05),
    "r_small_toe": (("r_foot",), 0.05), "r_heel": (("r_foot",), 0.05),
}  # fmt: skip


@dataclass
class RenderedCrops:
    """A rendered batch. Pixel coordinates are in the full frame unless said otherwise."""

    images: np.ndarray  # (B, R, R, 3) uint8
    masks: np.ndarray  # (B, R, R) uint8, 255 = body
    crop_center: np.ndarray  # (B, 2) float32
    crop_size: np.ndarray  # (B,) float32
    keypoints_2d: np.ndarray  # (B, K, 3) float32: x, y, confidence
    visible: np.ndarray  # (B, K) uint8
    keypoints_3d: np.ndarray  # (B, K, 4) float32: camera-frame metres, confidence


class CropRenderer:
    """Everything that depends only on the body model (topology, UVs, parts, visibility rule)."""

    def __init__(self, body: BodyModel, crop_res: int, supersample: int = 2,
                 margin: float = 1.2) -> None:
        if body.uv is None or body.face_uv is None:
            raise ValueError(f"body model {body.name!r} has no UVs: cannot texture it")
        if supersample < 1 or crop_res < 8:
            raise ValueError(f"need supersample >= 1 and crop_res >= 8, got {supersample}, "
                             f"{crop_res}")
        self.crop_res, self.supersample, self.margin = int(crop_res), int(supersample), margin
        self.faces = body.faces.long().cpu()
        self.face_uv = body.face_uv.long().cpu()
        self.uv = body.uv.float().cpu()
        self.face_parts = body.face_parts.long().cpu()
        self.keypoint_mask = body.keypoint_mask.bool().cpu()
        parts = list(body.part_names)
        allowed = torch.zeros(len(SUPERSET), len(parts), dtype=torch.bool)
        tol = torch.zeros(len(SUPERSET))
        for k, name in enumerate(SUPERSET):
            group, t = VISIBILITY_RULES[name]
            allowed[k, [parts.index(p) for p in group if p in parts]] = True
            tol[k] = t
        self.allowed, self.tolerance = allowed, tol

    def crop_boxes(self, kp2d: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor,
                                                                           torch.Tensor]:
        """Square boxes (centre (B, 2), side (B,)) around the valid keypoints, vectorised
        version of :func:`texturepose.geometry.crops.box_from_keypoints`."""
        if not bool(valid.any(dim=1).all()):
            raise ValueError("a sample has no keypoint inside its frame: cannot crop it")
        big = torch.finfo(kp2d.dtype).max
        lo = torch.where(valid[..., None], kp2d, big).amin(dim=1)
        hi = torch.where(valid[..., None], kp2d, -big).amax(dim=1)
        return (lo + hi) / 2, ((hi - lo).amax(dim=1) * self.margin).clamp(min=1.0)

    @torch.no_grad()
    def render(
        self,
        vertices: torch.Tensor,
        keypoints: torch.Tensor,
        K: torch.Tensor,
        Rt: torch.Tensor,
        frame_size: tuple[int, int],
        texture: torch.Tensor,
        backgrounds: list[np.ndarray],
        light_dir: torch.Tensor,
        ambient: float,
    ) -> RenderedCrops:
        """Render B samples of one subject.

        Args:
            vertices, keypoints: (B, V, 3), (B, K, 3) world-frame mesh and superset keypoints.
            K, Rt: (B, 3, 3) full-frame intrinsics, (B, 3, 4) world->camera extrinsics.
            frame_size: (width, height) of the full frame.
            texture: (3, T, T) float in [0, 1], the subject's UV texture (row 0 = v near 1).
            backgrounds: B full-frame RGB uint8 images (height, width, 3).
            light_dir: (3,) unit vector towards the light, world frame.
            ambient: ambient light in [0, 1].
        """
        b = vertices.shape[0]
        width, height = frame_size
        rot, trans = Rt[:, :, :3], Rt[:, :, 3]
        v_cam = vertices @ rot.transpose(1, 2) + trans[:, None]
        k_cam = keypoints @ rot.transpose(1, 2) + trans[:, None]
        kp2d = project(k_cam, K)
        conf = (self.keypoint_mask[None] & (k_cam[..., 2] > 0) & (kp2d[..., 0] >= 0)
                & (kp2d[..., 0] < width) & (kp2d[..., 1] >= 0) & (kp2d[..., 1] < height))
        center, size = self.crop_boxes(kp2d, conf)
        res_ss = self.crop_res * self.supersample
        # Crop intrinsics: full-frame pixels -> crop pixels (crop_matrix at res_ss), then K.
        scale = res_ss / size
        a = torch.zeros(b, 3, 3)
        a[:, 0, 0], a[:, 1, 1], a[:, 2, 2] = scale, scale, 1.0
        a[:, :2, 2] = res_ss / 2.0 - scale[:, None] * center
        k_crop = a @ K
        frags = rasterize(v_cam, self.faces, k_crop, (res_ss, res_ss))
        cover = frags.mask  # (B, H, W)

        # Shade only the covered pixels (a third of the crop or so), in NHWC layout.
        fg = cover.flatten().nonzero().squeeze(1)
        face = frags.face_index.flatten()[fg]
        bary = frags.bary.reshape(-1, 3)[fg, :, None]  # (n, 3, 1)
        bidx = torch.div(fg, res_ss * res_ss, rounding_mode="floor")
        # Smooth shading: area-weighted vertex normals in the camera frame, Lambert + ambient.
        tri = v_cam[:, self.faces]
        fn = torch.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], dim=-1)
        vn = torch.zeros_like(v_cam).index_add_(1, self.faces.flatten(),
                                                fn.repeat_interleave(3, dim=1))
        normal = F.normalize((vn[bidx[:, None], self.faces[face]] * bary).sum(1), dim=-1)
        light = F.normalize(light_dir.to(v_cam) @ rot.transpose(1, 2), dim=-1)  # (B, 3)
        lambert = (normal * light[bidx]).sum(-1).clamp(min=0)
        shade = ambient + (1.0 - ambient) * lambert  # (n,)
        # Texture lookup at the interpolated UVs (texel row 0 is v = 1).
        uv = (self.uv[self.face_uv[face]] * bary).sum(1)
        grid = torch.stack([2 * uv[:, 0] - 1, 1 - 2 * uv[:, 1]], dim=-1)[None, None]
        colour = F.grid_sample(texture[None], grid, mode="bilinear", padding_mode="border",
                               align_corners=False)[0, :, 0].T  # (n, 3)
        colour = colour * (shade[:, None] * 255.0)

        bg = np.stack([_crop(bgi, c, s, res_ss) for bgi, c, s in
                       zip(backgrounds, center.numpy(), size.numpy(), strict=True)])
        comp = torch.from_numpy(bg).float()  # (B, H, W, 3)
        comp.view(-1, 3)[fg] = colour
        ss, res = self.supersample, self.crop_res
        # Area downsampling = anti-aliasing of silhouettes and texture.
        comp = comp.view(b, res, ss, res, ss, 3).mean(dim=(2, 4))
        alpha = cover.float().view(b, res, ss, res, ss).mean(dim=(2, 4))
        images = comp.round().clamp(0, 255).to(torch.uint8).numpy()
        masks = ((alpha >= 0.5).to(torch.uint8) * 255).numpy()

        visible = self._visibility(k_cam, k_crop, frags.face_index, frags.depth) & conf
        kp3d = torch.cat([k_cam, conf[..., None].float()], dim=-1)
        kp2d_c = torch.cat([kp2d, conf[..., None].float()], dim=-1)
        return RenderedCrops(
            images=images, masks=masks, crop_center=center.numpy().astype(np.float32),
            crop_size=size.numpy().astype(np.float32),
            keypoints_2d=kp2d_c.numpy().astype(np.float32),
            visible=visible.numpy().astype(np.uint8),
            keypoints_3d=kp3d.numpy().astype(np.float32),
        )

    def _visibility(self, k_cam: torch.Tensor, k_crop: torch.Tensor, face_index: torch.Tensor,
                    depth: torch.Tensor) -> torch.Tensor:
        """(B, K) bool by the rule of the module docstring."""
        b, h, w = face_index.shape
        px = project(k_cam, k_crop)
        ix = px[..., 0].floor().long().clamp(0, w - 1)
        iy = px[..., 1].floor().long().clamp(0, h - 1)
        flat = iy * w + ix
        face = face_index.reshape(b, -1).gather(1, flat)
        d = depth.reshape(b, -1).gather(1, flat)
        part = self.face_parts[face.clamp(min=0)]
        kk = torch.arange(k_cam.shape[1])[None].expand(b, -1)
        own = self.allowed[kk, part]
        not_in_front = d >= k_cam[..., 2] - self.tolerance[None]
        return (face < 0) | (own & not_in_front)


def _crop(image: np.ndarray, center: np.ndarray, size: float, res: int) -> np.ndarray:
    """Area-resampled square crop of a background (same transform as crops.crop_image, with
    the border replicated so that boxes leaving the frame show no black band)."""
    m = crop_matrix(center, size, res)
    interp = cv2.INTER_AREA if size > res else cv2.INTER_LINEAR
    return cv2.warpAffine(image, m, (res, res), flags=interp, borderMode=cv2.BORDER_REFLECT)
