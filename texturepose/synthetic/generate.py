"""The synthetic multi-view dataset: subjects x mocap clips x cameras, written in the schema.

Layout of the world (Human3.6M-like): the subject's root stays at the world origin (the mocap
poses carry no translation), each sequence turns the body by a random heading about the vertical,
and ``num_cameras`` calibrated cameras stand in a ring around it (see :mod:`.rig`). Each subject
has its own cameras, backgrounds, texture and light. Subjects are split into train and test.

Stored per sample (see :mod:`texturepose.data.hdf5`): the crop (JPEG) and its box, superset
keypoints projected with the stored full-frame camera (confidence 1 where the body model
regresses the point and it lies in the frame) with self-occlusion flags, camera-frame 3D
keypoints, the body pose with the global orientation expressed in the camera frame
(``R_cam = R_wc R_world``), the phenotypes as shape, ``cam_K``/``cam_Rt`` and the mask. Because
the root sits at the world origin, the camera-frame mesh is ``body(body_pose, body_shape)`` shifted
by ``cam_Rt[:, 3]``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from texturepose.body.base import BodyModel
from texturepose.data.codecs import encode_jpeg, encode_png
from texturepose.data.hdf5 import Hdf5Writer
from texturepose.synthetic.backgrounds import make_background
from texturepose.synthetic.render import CropRenderer
from texturepose.synthetic.rig import RigConfig, make_rig
from texturepose.synthetic.subjects import Subject, sample_subjects
from texturepose.synthetic.textures import build_layout, paint_texture

log = logging.getLogger(__name__)


@dataclass
class PoseClips:
    """Motion-capture poses of the body model: ``rotmats (N, J, 3, 3)`` in the canonical frame,
    and for each frame its clip name and frame index in that clip."""

    rotmats: np.ndarray
    clip: np.ndarray
    frame: np.ndarray
    licence: str = ""
    split: np.ndarray | None = None  # (N,) "train"/"test" per pose; None: all "train"

    def __post_init__(self) -> None:
        n = len(self.rotmats)
        if self.split is None:
            self.split = np.array(["train"] * n, object)
        if self.rotmats.ndim != 4 or self.rotmats.shape[2:] != (3, 3):
            raise ValueError(f"rotmats must be (N, J, 3, 3), got {self.rotmats.shape}")
        if len(self.clip) != n or len(self.frame) != n or len(self.split) != n:
            raise ValueError(f"clip ({len(self.clip)}), frame ({len(self.frame)}) and split "
                             f"({len(self.split)}) must have one entry per pose ({n})")
        if n == 0:
            raise ValueError("no mocap poses: run the mocap stage first (dvc repro mocap)")

    def clip_names(self, split: str | None = None) -> list[str]:
        """Distinct clip names in first-appearance order (of one split when given)."""
        _, first = np.unique(self.clip, return_index=True)
        names = [str(self.clip[i]) for i in sorted(first)]
        if split is None:
            return names
        return [c for c in names if self.split[np.flatnonzero(self.clip == c)[0]] == split]


@dataclass
class SynthConfig:
    """Sizes of the synthetic dataset (``params.yaml`` section ``synthetic``)."""

    subjects_train: int = 4
    subjects_test: int = 2
    clips_per_subject: int = 2
    frames_per_clip: int = 8
    frame_step: int = 3
    crop_res: int = 128
    supersample: int = 2
    texture_res: int = 512
    margin: float = 1.2
    jpeg_quality: int = 90
    batch_size: int = 16
    seed: int = 0
    rig: RigConfig = field(default_factory=RigConfig)
    #: value of the files' ``created`` attribute (None: the current time); set it for
    #: byte-for-byte reproducible files.
    created: str | None = None


def subject_names(config: SynthConfig) -> tuple[list[str], list[str]]:
    n = config.subjects_train + config.subjects_test
    names = [f"S{i + 1:02d}" for i in range(n)]
    return names[: config.subjects_train], names[config.subjects_train :]


def _select_sequences(poses: PoseClips, config: SynthConfig, rng: np.random.Generator,
                      split: str) -> list[tuple[str, np.ndarray]]:
    """(sequence name, pose row indices) for one subject of ``split``: distinct clips of that
    split where possible (held-out subjects perform held-out motions), each a window of
    ``frames_per_clip`` poses ``frame_step`` apart (shorter clips give fewer)."""
    clips = poses.clip_names(split) or poses.clip_names()
    n = config.clips_per_subject
    chosen = rng.choice(len(clips), size=n, replace=n > len(clips))
    out, used = [], {}
    for c in chosen:
        name = clips[int(c)]
        rows = np.flatnonzero(poses.clip == name)
        rows = rows[np.argsort(poses.frame[rows], kind="stable")]
        span = (config.frames_per_clip - 1) * config.frame_step + 1
        start = int(rng.integers(0, max(len(rows) - span, 0) + 1))
        sel = rows[start : start + span : config.frame_step][: config.frames_per_clip]
        k = used.get(name, 0)
        used[name] = k + 1
        out.append((name if k == 0 else f"{name}_{k}", sel))
    return out


def _yaw(angle: float) -> torch.Tensor:
    c, s = np.cos(angle), np.sin(angle)
    return torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], dtype=torch.float32)


def _subject_samples(body: BodyModel, renderer: CropRenderer, subject: Subject, layout,
                     poses: PoseClips, config: SynthConfig, progress,
                     split: str = "train") -> list[dict]:
    """All samples of one subject (every sequence, frame and camera)."""
    rng = np.random.default_rng([subject.seed, 2])
    shape = torch.from_numpy(subject.phenotype)[None]
    with torch.no_grad():
        rest = body(body.rest_rotmats(1), shape)
    floor_y = float(rest.vertices[0, :, 1].min())
    cam_k, cam_rt = make_rig(config.rig, rng, floor_y)
    ncam = len(cam_k)
    width, height = config.rig.width, config.rig.height
    backgrounds = [make_background(height, width, np.random.default_rng([subject.seed, 3, c]))
                   for c in range(ncam)]
    texture = torch.from_numpy(paint_texture(layout, subject)).permute(2, 0, 1).float() / 255.0
    light = torch.from_numpy(subject.light_dir)
    samples = []
    for sequence, rows in _select_sequences(poses, config, rng, split):
        yaw = _yaw(rng.uniform(0, 2 * np.pi))
        rot = torch.from_numpy(poses.rotmats[rows]).float()
        rot[:, 0] = yaw @ rot[:, 0]
        frames = poses.frame[rows]
        # Batches of whole instants (all cameras of a frame together).
        per = max(1, config.batch_size // ncam)
        for f0 in range(0, len(rows), per):
            r = rot[f0 : f0 + per]
            nf = len(r)
            with torch.no_grad():
                out = body(r, shape.expand(nf, -1))
            idx_f = torch.arange(nf).repeat_interleave(ncam)
            idx_c = torch.arange(ncam).repeat(nf)
            k_t = torch.from_numpy(cam_k)[idx_c]
            rt_t = torch.from_numpy(cam_rt)[idx_c]
            res = renderer.render(out.vertices[idx_f], out.keypoints[idx_f], k_t, rt_t,
                                  (width, height), texture,
                                  [backgrounds[int(c)] for c in idx_c], light, subject.ambient)
            pose_cam = r[idx_f].clone()
            pose_cam[:, 0] = rt_t[:, :, :3] @ pose_cam[:, 0]
            for i in range(len(idx_f)):
                f, c = int(idx_f[i]), int(idx_c[i])
                frame = int(frames[f0 + f])
                cam_name = f"C{c + 1}"
                samples.append({
                    "image_jpeg": encode_jpeg(res.images[i], config.jpeg_quality),
                    "crop_center": res.crop_center[i],
                    "crop_size": float(res.crop_size[i]),
                    "keypoints_2d": res.keypoints_2d[i],
                    "visible": res.visible[i],
                    "keypoints_3d": res.keypoints_3d[i],
                    "body_pose": pose_cam[i].numpy(),
                    "body_shape": subject.phenotype,
                    "cam_K": cam_k[c],
                    "cam_Rt": cam_rt[c],
                    "mask_png": encode_png(res.masks[i]),
                    "image_name": f"{subject.name}/{sequence}/{cam_name}/{frame:06d}.jpg",
                    "subject": subject.name,
                    "sequence": sequence,
                    "camera": cam_name,
                    "frame": frame,
                    "person": 0,
                })
            progress.update(len(idx_f))
    return samples


def synthesize(out_dir: str | Path, config: SynthConfig, body: BodyModel,
               poses: PoseClips) -> dict:
    """Render the dataset and write ``synthetic_train.h5`` and ``synthetic_test.h5`` in
    ``out_dir``. Returns counts and timings (samples per split, images/s)."""
    if poses.rotmats.shape[1] != body.num_joints:
        raise ValueError(f"mocap poses have {poses.rotmats.shape[1]} joints but body model "
                         f"{body.name!r} has {body.num_joints}: rerun the mocap stage for this "
                         "body model")
    if config.subjects_train < 1 or config.subjects_test < 0:
        raise ValueError("synthetic.subjects_train must be >= 1 and subjects_test >= 0")
    out_dir = Path(out_dir)
    torch_threads = torch.get_num_threads()
    log.info("synthesizing with %d torch threads: %s", torch_threads, config)
    layout = build_layout(body, config.texture_res)
    renderer = CropRenderer(body, config.crop_res, config.supersample, config.margin)
    train_names, test_names = subject_names(config)
    if test_names and not poses.clip_names("test"):
        log.warning("the mocap file holds no held-out (test) clips: the test subjects perform "
                    "the training motions (set mocap.test_every to hold clips out)")
    # Body shapes from the body model's population prior (adults, for Anny).
    subjects = sample_subjects(train_names + test_names, config.seed, lambda i: body.sample_shapes(
        1, seed=config.seed * 100_003 + i)[0].cpu().numpy())
    per_subject = config.clips_per_subject * config.frames_per_clip * config.rig.num_cameras
    total = per_subject * len(subjects)
    counts: dict = {}
    extra = {"generator_config": json.dumps(asdict(config), default=str), "seed": config.seed}
    if config.created is not None:
        extra["created"] = config.created
    t0 = time.perf_counter()
    render_s = 0.0
    with tqdm(total=total, desc="synthesize", unit="img") as progress:
        for split, names in (("train", train_names), ("test", test_names)):
            if not names:
                continue
            path = out_dir / f"synthetic_{split}.h5"
            writer = Hdf5Writer(
                path, dataset="synthetic", split=split, crop_res=config.crop_res,
                source="texturepose synthetic renders of the Anny body model posed with mocap",
                licence="renders: Apache-2.0 (Anny, MakeHuman CC0 assets); poses: "
                + (poses.licence or "see the mocap stage's sources"),
                body_model=body.name, extra_attrs=extra,
            )
            for subject in subjects:
                if subject.name not in names:
                    continue
                tr = time.perf_counter()
                for s in _subject_samples(body, renderer, subject, layout, poses, config,
                                          progress, split):
                    writer.add(s)
                render_s += time.perf_counter() - tr
            writer.close()
            counts[split] = len(writer)
    elapsed = time.perf_counter() - t0
    n = sum(counts.values())
    counts.update({
        "images": n,
        "subjects_train": len(train_names),
        "subjects_test": len(test_names),
        "cameras": config.rig.num_cameras,
        "crop_res": config.crop_res,
        "seconds": round(elapsed, 2),
        "images_per_second": round(n / max(render_s, 1e-9), 2),
        "torch_threads": torch_threads,
    })
    log.info("synthetic dataset: %s", counts)
    return counts


def load_pose_clips(path: str | Path) -> PoseClips:
    """Poses of the mocap stage's file (see :func:`texturepose.mocap.poses.read_mocap_h5`)."""
    from texturepose.mocap.poses import read_mocap_h5

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no mocap poses file; run the mocap stage first "
                                "(dvc repro mocap)")
    m = read_mocap_h5(path)
    clip = np.array([str(c) for c in m["clip_name"]])
    licences = sorted({str(x) for x in m["clips"]["licence"]})
    return PoseClips(np.asarray(m["rotmats"], np.float32), clip,
                     np.asarray(m["frame"], np.int64), licence="; ".join(licences),
                     split=np.asarray(m["split"], object))


def config_from_params(params: dict) -> SynthConfig:
    """The generator's config from the ``seed`` and ``synthetic`` sections of params.yaml."""
    p = dict(params.get("synthetic") or {})
    rig = RigConfig(
        num_cameras=int(p.get("cameras", 4)),
        width=int(p.get("image_width", 1000)),
        height=int(p.get("image_height", 1002)),
        focal=float(p.get("focal", 1145.0)),
        radius=tuple(p.get("camera_radius", (4.0, 5.0))),
        camera_height=tuple(p.get("camera_height", (1.2, 1.8))),
    )
    seed = int(params.get("seed", 0)) + int(p.get("seed_offset", 0))
    return SynthConfig(
        subjects_train=int(p.get("subjects_train", 4)),
        subjects_test=int(p.get("subjects_test", 2)),
        clips_per_subject=int(p.get("clips_per_subject", 2)),
        frames_per_clip=int(p.get("frames_per_clip", 8)),
        frame_step=int(p.get("frame_step", 3)),
        crop_res=int(p.get("crop_res", 128)),
        supersample=int(p.get("supersample", 2)),
        texture_res=int(p.get("texture_res", 512)),
        margin=float(p.get("margin", 1.2)),
        jpeg_quality=int(p.get("jpeg_quality", 90)),
        batch_size=int(p.get("batch_size", 16)),
        seed=seed,
        rig=rig,
        # A fixed attribute instead of the clock: the same params give byte-identical files.
        created=f"reproducible: seed {seed}, see generator_config and code_version",
    )
