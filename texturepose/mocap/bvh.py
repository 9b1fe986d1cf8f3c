"""BVH motion-capture files: a vectorised parser and forward kinematics.

A BVH file is a joint hierarchy (``HIERARCHY``: per joint an ``OFFSET`` from its parent and a list
of ``CHANNELS``) followed by ``MOTION``: a frame count, a frame time and one line of channel values
per frame. Conventions used here, the common ones (Biovision, CMU/cgspeed, Character Creator,
Blender's importer):

- rotation channels of a joint compose in the order listed: ``Zrotation Xrotation Yrotation``
  means ``R = Rz @ Rx @ Ry`` (intrinsic Euler angles), in degrees;
- a joint's local translation is its ``OFFSET``, except along axes that have position channels,
  where the channel value replaces the offset (roots, and rigs such as Bandai Namco's that carry
  6 channels on every joint, with the offset equal to the rest value of the channel);
- ``End Site`` blocks become extra joints named ``<parent>_End`` with no channels, so that head
  tops, finger tips and toe tips have positions too.

Errors are :class:`BvhError` naming the file and the line.
"""

from __future__ import annotations

import gzip
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

log = logging.getLogger(__name__)

POSITION_CHANNELS = ("Xposition", "Yposition", "Zposition")
ROTATION_CHANNELS = ("Xrotation", "Yrotation", "Zrotation")

#: Metres per file unit of the units a BVH may use; ``cmu_asf`` is the CMU ASF length unit
#: (0.45 in = 1/0.45 inch scaled, as used by cgspeed's plain CMU conversion).
UNITS: dict[str, float] = {
    "m": 1.0,
    "cm": 0.01,
    "mm": 0.001,
    "inch": 0.0254,
    "cmu_asf": 0.0254 / 0.45,
}


class BvhError(ValueError):
    """A malformed BVH file; the message names the file, the line and what was expected."""

    def __init__(self, path: str | os.PathLike, line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")
        self.path = Path(path)
        self.line = line


@dataclass
class BvhClip:
    """One parsed BVH file.

    Attributes:
        path: the file.
        names: joint names, parents before children (End Sites as ``<parent>_End``).
        parents: (J,) parent index, -1 for the root(s).
        offsets: (J, 3) rest offsets from the parent, file units.
        channels: per joint, its channel names in file order (empty for End Sites).
        channel_start: (J,) column of the joint's first channel in ``motion``.
        frame_time: seconds per frame, as the header says.
        motion: (T, C) channel values, float64.
        scale: metres per file unit (see :data:`UNITS` and :func:`guess_units`).
        units: the name of ``scale``'s unit.
        position_mode: ``replace`` (a position channel replaces the offset along its axis) or
            ``add`` (it moves the joint from its offset; Character Creator roots). Files do not
            say which; the skeleton map does (:mod:`texturepose.mocap.skeletons`).
        is_end_site: (J,) True for End Site pseudo-joints.
    """

    path: Path
    names: list[str]
    parents: np.ndarray
    offsets: np.ndarray
    channels: list[tuple[str, ...]]
    channel_start: np.ndarray
    frame_time: float
    motion: np.ndarray
    scale: float = 1.0
    units: str = "m"
    position_mode: str = "replace"
    is_end_site: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    @property
    def num_frames(self) -> int:
        return int(self.motion.shape[0])

    @property
    def num_joints(self) -> int:
        return len(self.names)

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"{self.path}: no joint {name!r}; joints: {self.names}") from None


def read_bvh(
    path: str | os.PathLike, units: str = "auto", position_mode: str = "replace"
) -> BvhClip:
    """Parse a BVH file (``.bvh``, or gzip-compressed ``.bvh.gz``). ``units``: a key of
    :data:`UNITS`, or ``auto`` to guess from body size; ``position_mode``: see :class:`BvhClip`."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
                text = f.read()
        else:
            text = path.read_text(encoding="utf-8", errors="replace")
    except (OSError, EOFError) as e:
        raise BvhError(path, None, f"cannot read the file ({e})") from e
    lines = text.splitlines()
    clip, motion_line = _parse_hierarchy(path, lines)
    clip.motion = _parse_motion(path, lines, motion_line, clip)
    clip.position_mode = position_mode
    if units == "auto":
        units = guess_units(clip)
    if units not in UNITS:
        raise ValueError(f"unknown BVH units {units!r}; known: {sorted(UNITS)} or 'auto'")
    clip.units, clip.scale = units, UNITS[units]
    return clip


def _parse_hierarchy(path: Path, lines: list[str]) -> tuple[BvhClip, int]:
    names: list[str] = []
    parents: list[int] = []
    offsets: list[list[float]] = []
    channels: list[tuple[str, ...]] = []
    is_end: list[bool] = []
    stack: list[int] = []  # open joint blocks
    pending: int | None = None  # joint declared, its '{' not yet seen
    n_chan = 0
    starts: list[int] = []
    started = False
    i = 0
    for i, raw in enumerate(lines):
        tok = raw.split()
        if not tok:
            continue
        key = tok[0]
        lineno = i + 1
        if not started:
            if key != "HIERARCHY":
                raise BvhError(
                    path, lineno, f"expected 'HIERARCHY' as the first keyword, got {key!r}"
                )
            started = True
            continue
        if key in ("ROOT", "JOINT") or (key == "End" and len(tok) > 1 and tok[1] == "Site"):
            if key == "JOINT" and not stack:
                raise BvhError(path, lineno, "JOINT outside any ROOT block")
            if key == "End":
                if not stack:
                    raise BvhError(path, lineno, "End Site outside any joint block")
                name = names[stack[-1]] + "_End"
            else:
                if len(tok) < 2:
                    raise BvhError(path, lineno, f"{key} without a joint name")
                name = " ".join(tok[1:])
            names.append(name)
            parents.append(stack[-1] if stack else -1)
            offsets.append([np.nan] * 3)
            channels.append(())
            starts.append(n_chan)
            is_end.append(key == "End")
            pending = len(names) - 1
        elif key == "{":
            if pending is None:
                raise BvhError(path, lineno, "'{' without a preceding ROOT/JOINT/End Site")
            stack.append(pending)
            pending = None
        elif key == "}":
            if not stack:
                raise BvhError(path, lineno, "unbalanced '}'")
            j = stack.pop()
            if np.isnan(offsets[j][0]):
                raise BvhError(path, lineno, f"joint {names[j]!r} has no OFFSET")
        elif key == "OFFSET":
            if not stack:
                raise BvhError(path, lineno, "OFFSET outside a joint block")
            try:
                vals = [float(v) for v in tok[1:]]
            except ValueError:
                raise BvhError(path, lineno, f"non-numeric OFFSET {tok[1:]}") from None
            if len(vals) != 3:
                raise BvhError(path, lineno, f"OFFSET needs 3 numbers, got {len(vals)}")
            offsets[stack[-1]] = vals
        elif key == "CHANNELS":
            if not stack or is_end[stack[-1]]:
                raise BvhError(path, lineno, "CHANNELS outside a ROOT/JOINT block")
            try:
                n = int(tok[1])
            except (IndexError, ValueError):
                raise BvhError(
                    path, lineno, "CHANNELS needs a count then the channel names"
                ) from None
            chans = tuple(tok[2:])
            if len(chans) != n:
                raise BvhError(path, lineno, f"CHANNELS says {n} channels but lists {len(chans)}")
            bad = [c for c in chans if c not in POSITION_CHANNELS + ROTATION_CHANNELS]
            if bad:
                raise BvhError(
                    path,
                    lineno,
                    f"unknown channel names {bad}; expected "
                    f"{POSITION_CHANNELS + ROTATION_CHANNELS}",
                )
            j = stack[-1]
            channels[j] = chans
            starts[j] = n_chan
            n_chan += n
        elif key == "MOTION":
            if stack or pending is not None:
                raise BvhError(
                    path,
                    lineno,
                    f"MOTION before the hierarchy closed ({len(stack)} "
                    "joint blocks still open): the file is truncated or malformed",
                )
            break
        else:
            raise BvhError(path, lineno, f"unexpected keyword {key!r} in HIERARCHY")
    else:
        if not started:
            raise BvhError(path, None, "empty file or no HIERARCHY section")
        raise BvhError(path, len(lines), "no MOTION section: the file is truncated")
    if not names:
        raise BvhError(path, i + 1, "HIERARCHY declares no joints")
    clip = BvhClip(
        path=path,
        names=names,
        parents=np.array(parents, np.int64),
        offsets=np.array(offsets, np.float64),
        channels=channels,
        channel_start=np.array(starts, np.int64),
        frame_time=0.0,
        motion=np.zeros((0, n_chan)),
        is_end_site=np.array(is_end, bool),
    )
    return clip, i


def _header_value(path: Path, lines: list[str], i: int, label: str) -> str:
    while i < len(lines) and not lines[i].strip():
        i += 1
    if i >= len(lines):
        raise BvhError(path, i, f"file ends before the {label!r} line of MOTION: truncated")
    line = lines[i].strip()
    if not line.startswith(label):
        raise BvhError(path, i + 1, f"expected {label!r}, got {line[:60]!r}")
    return line[len(label) :].strip()


def _parse_motion(path: Path, lines: list[str], motion_line: int, clip: BvhClip) -> np.ndarray:
    n_chan = sum(len(c) for c in clip.channels)
    i = motion_line + 1
    while i < len(lines) and not lines[i].strip():
        i += 1
    frames_txt = _header_value(path, lines, i, "Frames:")
    try:
        n_frames = int(frames_txt)
    except ValueError:
        raise BvhError(path, i + 1, f"'Frames:' needs an integer, got {frames_txt!r}") from None
    i += 1
    while i < len(lines) and not lines[i].strip():
        i += 1
    ft_txt = _header_value(path, lines, i, "Frame Time:")
    try:
        clip.frame_time = float(ft_txt)
    except ValueError:
        raise BvhError(path, i + 1, f"'Frame Time:' needs a number, got {ft_txt!r}") from None
    if not clip.frame_time > 0:
        raise BvhError(path, i + 1, f"'Frame Time:' must be positive, got {clip.frame_time}")
    first = i + 1  # 0-based index of the first frame line
    body = lines[first:]
    # Trailing blank lines are harmless; blank lines inside the data are not.
    while body and not body[-1].strip():
        body.pop()
    n_lines = len(body)
    tokens = " ".join(body).split()
    if n_lines == n_frames and len(tokens) == n_frames * n_chan:
        try:
            motion = np.array(tokens, dtype=np.float64).reshape(n_frames, n_chan)
        except ValueError:
            motion = None  # find the offending line below
        if motion is not None and np.isfinite(motion).all():
            return motion
    # Slow path, only for broken files: find the first bad line to name it.
    for k, line in enumerate(body):
        vals = line.split()
        if len(vals) != n_chan:
            what = "blank line" if not vals else f"{len(vals)} values"
            raise BvhError(
                path,
                first + k + 1,
                f"frame {k} has {what}, expected {n_chan} "
                f"channel values (line truncated or channel count wrong)",
            )
        try:
            row = np.array(vals, dtype=np.float64)
        except ValueError:
            bad = next(v for v in vals if not _is_float(v))
            raise BvhError(path, first + k + 1, f"non-numeric value {bad!r} in frame {k}") from None
        if not np.isfinite(row).all():
            raise BvhError(path, first + k + 1, f"non-finite value (nan/inf) in frame {k}")
    if n_lines < n_frames:
        raise BvhError(
            path,
            first + n_lines,
            f"header says Frames: {n_frames} but the file "
            f"ends after {n_lines} frame lines: the file is truncated",
        )
    raise BvhError(
        path,
        first + n_frames + 1,
        f"header says Frames: {n_frames} but the file has "
        f"{n_lines} frame lines; fix the 'Frames:' header",
    )


def _is_float(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def local_transforms(
    clip: BvhClip, frames: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame local rotations ``(T, J, 3, 3)`` and translations ``(T, J, 3)`` (file units)."""
    motion = clip.motion if frames is None else clip.motion[np.asarray(frames)]
    t, j = motion.shape[0], clip.num_joints
    rot = np.broadcast_to(np.eye(3), (t, j, 3, 3)).copy()
    trans = np.broadcast_to(clip.offsets, (t, j, 3)).copy()
    # Group joints by rotation order, so that each order is one vectorised scipy call.
    groups: dict[str, tuple[list[int], list[list[int]]]] = {}
    if clip.position_mode not in ("replace", "add"):
        raise ValueError(f"position_mode must be 'replace' or 'add', got {clip.position_mode!r}")
    add = clip.position_mode == "add"
    for k, chans in enumerate(clip.channels):
        s = int(clip.channel_start[k])
        order = "".join(c[0] for c in chans if c in ROTATION_CHANNELS)
        cols = [s + n for n, c in enumerate(chans) if c in ROTATION_CHANNELS]
        for n, c in enumerate(chans):
            if c in POSITION_CHANNELS:
                axis = POSITION_CHANNELS.index(c)
                trans[:, k, axis] = motion[:, s + n] + (clip.offsets[k, axis] if add else 0.0)
        if order:
            groups.setdefault(order, ([], []))
            groups[order][0].append(k)
            groups[order][1].append(cols)
    for order, (joints, cols) in groups.items():
        angles = motion[:, np.array(cols)]  # (T, Jg, len(order))
        mats = Rotation.from_euler(order.upper(), angles.reshape(-1, len(order)), degrees=True)
        rot[:, joints] = mats.as_matrix().reshape(t, len(joints), 3, 3)
    return rot, trans


def forward_kinematics(
    clip: BvhClip, frames: np.ndarray | None = None, scale: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """World rotations ``(T, J, 3, 3)`` and positions ``(T, J, 3)`` (metres x ``scale``/clip)."""
    rot, trans = local_transforms(clip, frames)
    trans *= clip.scale if scale is None else scale
    g_rot = np.empty_like(rot)
    g_pos = np.empty_like(trans)
    # Parents precede children in file order, so one pass over joints suffices.
    for k, p in enumerate(clip.parents):
        if p < 0:
            g_rot[:, k] = rot[:, k]
            g_pos[:, k] = trans[:, k]
        else:
            g_rot[:, k] = g_rot[:, p] @ rot[:, k]
            g_pos[:, k] = g_pos[:, p] + np.einsum("tij,tj->ti", g_rot[:, p], trans[:, k])
    return g_rot, g_pos


def joint_positions(
    clip: BvhClip, frames: np.ndarray | None = None, scale: float | None = None
) -> np.ndarray:
    """World joint positions ``(T, J, 3)`` in metres (the clip's ``scale`` unless given)."""
    return forward_kinematics(clip, frames, scale)[1]


def guess_units(clip: BvhClip, height_m: float = 1.7) -> str:
    """Guess the length unit from the body's size: the unit whose scaled extent is nearest
    ``height_m`` (log scale). The extent is the median over a few frames of the largest side of
    the joints' bounding box, which is near body height or arm span in almost every pose."""
    if clip.num_frames == 0:
        return "m"
    frames = np.unique(np.linspace(0, clip.num_frames - 1, 9).round().astype(int))
    pos = joint_positions(clip, frames, scale=1.0)
    extent = float(np.median((pos.max(1) - pos.min(1)).max(-1)))
    if not extent > 0:
        return "m"
    best = min(UNITS, key=lambda u: abs(np.log(extent * UNITS[u] / height_m)))
    log.debug("%s: body extent %.3g file units -> %s", clip.path, extent, best)
    return best
