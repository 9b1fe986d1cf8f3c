"""Evaluation protocols: which samples, which joints, which root, which headline metric.

Human3.6M (Ionescu et al.), as in HMR/SPIN/TexturePose: test subjects S9 and S11; protocol 1
uses all four cameras, protocol 2 only the frontal camera 60457274 and reports the
Procrustes-aligned error. Samples are selected from the HDF5 identity fields (``subject`` like
"S9", ``camera`` like "60457274", ``frame``), and grouped per action/sequence with pandas.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from texturepose.keypoints import SUBSETS

#: Named joint sets that metrics are averaged over, as superset names.
JOINT_SETS: dict[str, tuple[str, ...]] = {
    **SUBSETS,
    # SPIN's 14 H36M joints (H36M_TO_J14): the 12 limb joints, the thorax ("neck") and the head.
    "h36m14": (
        "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle",
        "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist",
        "thorax", "head",
    ),
}  # fmt: skip

#: Frontal camera of Human3.6M protocol 2.
H36M_FRONTAL_CAMERA = "60457274"
H36M_TEST_SUBJECTS = ("S9", "S11")


class ProtocolError(ValueError):
    """A protocol that cannot be applied to the given samples; the message says why."""


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol. ``None`` for subjects/cameras means all of them."""

    name: str
    joints: str = "h36m17"  # key of JOINT_SETS
    root: str = "pelvis"  # key of metrics.ROOTS
    subjects: tuple[str, ...] | None = None
    cameras: tuple[str, ...] | None = None
    frame_step: int = 1  # keep frames with frame % frame_step == 0 (SPIN: 50 fps -> 10 fps)
    headline: str = "mpjpe"  # the metric the protocol is known by

    def joint_names(self) -> tuple[str, ...]:
        if self.joints not in JOINT_SETS:
            raise ProtocolError(
                f"protocol {self.name!r}: unknown joint set {self.joints!r}; "
                f"known: {sorted(JOINT_SETS)}"
            )
        return JOINT_SETS[self.joints]


H36M_P1 = Protocol("h36m_p1", subjects=H36M_TEST_SUBJECTS, headline="mpjpe")
H36M_P2 = Protocol(
    "h36m_p2", subjects=H36M_TEST_SUBJECTS, cameras=(H36M_FRONTAL_CAMERA,), headline="pa_mpjpe"
)
PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (H36M_P1, H36M_P2)}


def protocol_from_dict(cfg: Mapping) -> Protocol:
    """A protocol from a params.yaml mapping: ``{base: h36m_p1, frame_step: 5}`` starts from a
    named protocol and overrides fields; without ``base`` every field is given explicitly."""
    cfg = dict(cfg)
    base = cfg.pop("base", None)
    fields = set(Protocol.__dataclass_fields__)
    unknown = set(cfg) - fields
    if unknown:
        raise ProtocolError(f"unknown protocol field(s) {sorted(unknown)}; known: {sorted(fields)}")
    for key in ("subjects", "cameras"):
        if cfg.get(key) is not None:
            cfg[key] = tuple(str(v) for v in cfg[key])
    if base is not None:
        if base not in PROTOCOLS:
            raise ProtocolError(f"unknown base protocol {base!r}; known: {sorted(PROTOCOLS)}")
        return Protocol(**{**PROTOCOLS[base].__dict__, **cfg})
    if "name" not in cfg:
        raise ProtocolError("a protocol without 'base' needs a 'name'")
    return Protocol(**cfg)


def as_strings(values: Sequence) -> np.ndarray:
    """HDF5 strings may come back as bytes; compare as stripped str."""
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values]).astype(str)


def select(identity: Mapping[str, Sequence], protocol: Protocol) -> np.ndarray:
    """Boolean mask ``(N,)`` of the samples the protocol evaluates.

    ``identity`` maps ``subject``/``camera`` to per-sample strings and ``frame`` to integers (the
    HDF5 identity fields); only the fields the protocol filters on are needed. Raises
    :class:`ProtocolError` naming what was present when nothing matches.
    """
    n = len(next(iter(identity.values()))) if identity else 0
    keep = np.ones(n, bool)
    for field, wanted in (("subject", protocol.subjects), ("camera", protocol.cameras)):
        if wanted is None:
            continue
        if field not in identity:
            raise ProtocolError(
                f"protocol {protocol.name!r} selects by {field!r} but the samples have no such "
                f"identity field (have: {sorted(identity)})"
            )
        values = np.char.strip(as_strings(identity[field]))
        if len(values) != n:
            raise ProtocolError(f"identity field {field!r} has {len(values)} values, expected {n}")
        keep &= np.isin(values, [w.strip() for w in wanted])
    if protocol.frame_step > 1:
        if "frame" not in identity:
            raise ProtocolError(f"protocol {protocol.name!r} has frame_step but no 'frame' field")
        keep &= np.asarray(identity["frame"], np.int64) % protocol.frame_step == 0
    if not keep.any():
        present = {
            f: sorted(set(as_strings(identity[f])))[:20]
            for f in ("subject", "camera")
            if f in identity
        }
        raise ProtocolError(
            f"protocol {protocol.name!r} (subjects {protocol.subjects}, cameras "
            f"{protocol.cameras}, frame_step {protocol.frame_step}) selects no sample; the data "
            f"has {present}. Check that the evaluation set is the right split and that identity "
            f"fields use the stored spelling (subject 'S9', camera '60457274')."
        )
    return keep


# Raw Human3.6M action names that differ between releases/tools, mapped to the usual 15 names.
_ACTION_ALIASES = {"TakingPhoto": "Photo", "WalkingDog": "WalkDog"}


def action_name(sequence: str) -> str:
    """The Human3.6M action of a sequence name: ``"S9_Directions_1.54138969"``,
    ``"Directions 1"``, ``"WalkingDog"`` -> ``"Directions"``, ``"Directions"``, ``"WalkDog"``.
    Names that do not look like Human3.6M come back with only the decorations stripped."""
    s = sequence.decode() if isinstance(sequence, bytes) else str(sequence)
    s = re.sub(r"^S\d+[_ \-/]", "", s.strip())  # subject prefix
    s = re.sub(r"\.\d{8}$", "", s)  # camera suffix
    s = re.sub(r"[_ \-]*\d+$", "", s)  # take number ("Directions 1", "Sitting_2")
    return _ACTION_ALIASES.get(s, s)


def group_means(
    values: Mapping[str, np.ndarray], labels: Sequence, by: str = "sequence"
) -> pd.DataFrame:
    """Per-group means of per-sample values (NaN ignored) and the sample count ``n``.

    Returns a DataFrame with columns ``[by, n, *values]``, sorted by group label.
    """
    labels = as_strings(labels)
    df = pd.DataFrame({k: np.asarray(v, np.float64) for k, v in values.items()})
    if len(df) != len(labels):
        raise ValueError(f"{len(labels)} group labels for {len(df)} samples")
    df.insert(0, by, labels)
    out = df.groupby(by, sort=True).mean()
    out.insert(0, "n", df.groupby(by, sort=True).size())
    return out.reset_index()
