"""Getting raw datasets onto the machine: resumable, verified downloads of public archives, and
linking or copying from a local folder for registered datasets and offline machines.

A download goes to ``<dest>.part`` (resumed with an HTTP Range request after an interruption),
is checked against its sha256/md5 when one is known, and only then renamed to ``<dest>``; a file
with a wrong checksum is deleted, never kept under its final name.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

log = logging.getLogger(__name__)


class FetchError(RuntimeError):
    """A dataset could not be obtained; the message says what to download and where to put it."""


class ChecksumError(FetchError):
    """A downloaded file does not match its expected checksum (the file was removed)."""


@dataclass(frozen=True)
class RemoteFile:
    url: str
    filename: str
    sha256: str | None = None
    md5: str | None = None
    extract: bool = True


@dataclass(frozen=True)
class DatasetSource:
    """Where a dataset comes from and what its root must contain once set up."""

    name: str
    homepage: str
    files: tuple[RemoteFile, ...] = ()
    registered: bool = False
    expect: tuple[str, ...] = ()
    instructions: str = ""
    notes: dict[str, str] = field(default_factory=dict)


# Official URLs. Checksums are left None where no official value is published; the stage then
# warns and records the sha256 it computed so that later downloads can be pinned in params.yaml.
REGISTRY: dict[str, DatasetSource] = {
    "lsp": DatasetSource(
        "lsp", "http://sam.johnson.io/research/lsp.html",
        (RemoteFile("http://sam.johnson.io/research/lsp_dataset.zip", "lsp_dataset.zip"),),
        expect=("joints.mat", "images/im0001.jpg"),
        instructions="unzip lsp_dataset.zip so that joints.mat and images/ are in the root",
    ),
    "lspet": DatasetSource(
        "lspet", "http://sam.johnson.io/research/lspet.html",
        (RemoteFile("http://sam.johnson.io/research/lspet_dataset.zip", "lspet_dataset.zip"),),
        expect=("joints.mat", "images/im00001.jpg"),
        instructions="unzip lspet_dataset.zip so that joints.mat and images/ are in the root",
    ),
    "mpii": DatasetSource(
        "mpii", "http://human-pose.mpi-inf.mpg.de",
        (
            RemoteFile("https://datasets.d2.mpi-inf.mpg.de/andriluka14cvpr/"
                       "mpii_human_pose_v1.tar.gz", "mpii_human_pose_v1.tar.gz"),
            RemoteFile("https://datasets.d2.mpi-inf.mpg.de/andriluka14cvpr/"
                       "mpii_human_pose_v1_u12_2.zip", "mpii_human_pose_v1_u12_2.zip"),
        ),
        expect=("images",),
        instructions="images/ from the tar.gz and mpii_human_pose_v1_u12_2/*.mat from the zip "
                     "in the root; for the usual train/val split also put the json conversion "
                     "(mpii_train.json, mpii_val.json from mmpose/simple-baselines) in "
                     "annotations/",
    ),
    "coco": DatasetSource(
        "coco", "https://cocodataset.org",
        (
            RemoteFile("http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
                       "annotations_trainval2017.zip"),
            RemoteFile("http://images.cocodataset.org/zips/train2017.zip", "train2017.zip"),
            RemoteFile("http://images.cocodataset.org/zips/val2017.zip", "val2017.zip"),
        ),
        expect=("annotations",),
        instructions="annotations/person_keypoints_{train,val}2017.json and train2017/, val2017/ "
                     "in the root (for 2014 the same with 2014 names)",
    ),
    "h36m": DatasetSource(
        "h36m", "http://vision.imar.ro/human3.6m", registered=True, expect=("S1",),
        instructions="register at http://vision.imar.ro/human3.6m; download for S1, S5, S6, S7, "
                     "S8, S9, S11 'D3 Positions mono', 'D2 Positions' and 'Videos'; unpack to "
                     "<root>/S<n>/MyPoseFeatures/... and <root>/S<n>/Videos/; make "
                     "<root>/cameras.pkl with mmpose's tools/dataset_converters/preprocess_h36m.py",
    ),
    "h36m_spin": DatasetSource(
        "h36m_spin", "https://github.com/nkolot/SPIN", registered=True,
        instructions="SPIN's dataset_extras/h36m_train.npz (from its fetch_data.sh) in the root, "
                     "with the frames it names extracted from the Human3.6M videos",
    ),
    "3dpw": DatasetSource(
        "3dpw", "https://virtualhumans.mpi-inf.mpg.de/3DPW", registered=True,
        expect=("sequenceFiles", "imageFiles"),
        instructions="accept the licence at https://virtualhumans.mpi-inf.mpg.de/3DPW, unzip "
                     "imageFiles.zip and sequenceFiles.zip into the root",
    ),
    "mpi_inf_3dhp": DatasetSource(
        "mpi_inf_3dhp", "https://vcai.mpi-inf.mpg.de/3dhp-dataset", registered=True,
        instructions="accept the licence, run the dataset's get_dataset.sh and get_testset.sh "
                     "so that S1..S8/Seq1,2/ and mpi_inf_3dhp_test_set/TS1..6/ are in the root",
    ),
    "mosh": DatasetSource(
        "mosh", "https://amass.is.tue.mpg.de", registered=True,
        instructions="AMASS npz files (register at https://amass.is.tue.mpg.de; any subset, "
                     "e.g. CMU) or HMR/SPIN's MoSh npz files anywhere under the root",
    ),
}


def file_digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(path: Path, sha256: str | None = None, md5: str | None = None) -> None:
    """Raise :class:`ChecksumError` unless ``path`` matches the given digests."""
    for algo, want in (("sha256", sha256), ("md5", md5)):
        if want:
            got = file_digest(path, algo)
            if got.lower() != want.lower():
                raise ChecksumError(f"{path.name}: {algo} {got} does not match the expected "
                                    f"{want}; the download is corrupt or the file has changed")


def download(url: str, dest: str | os.PathLike, sha256: str | None = None, md5: str | None = None,
             retries: int = 3, timeout: float = 60.0, chunk: int = 1 << 20,
             backoff: float = 1.0) -> Path:
    """Download ``url`` to ``dest`` with resume, a progress bar and checksum verification.

    An existing ``dest`` that verifies is kept. A partial ``dest.part`` from an earlier run is
    resumed with ``Range: bytes=<size>-`` (restarted when the server ignores ranges). Connection
    errors are retried ``retries`` times (waiting ``backoff`` x 2^attempt s), each resuming where
    the last stopped.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        verify(dest, sha256, md5)
        log.info("%s already present and verified", dest)
        return dest
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            _transfer(url, part, timeout, chunk)
            break
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
            if isinstance(e, urllib.error.HTTPError) and e.code not in (408, 429, 500, 502, 503,
                                                                        504):
                raise FetchError(f"{url}: HTTP {e.code} {e.reason}") from e
            if attempt == retries:
                raise FetchError(f"{url}: download failed after {retries + 1} attempts ({e}); "
                                 f"{part.stat().st_size if part.exists() else 0} bytes kept in "
                                 f"{part}, rerun to resume") from e
            log.warning("%s: %s; resuming (attempt %d of %d)", url, e, attempt + 2, retries + 1)
            time.sleep(min(backoff * 2.0**attempt, 30.0))
    try:
        verify(part, sha256, md5)
    except ChecksumError:
        part.unlink(missing_ok=True)
        raise
    if not (sha256 or md5):
        log.warning("%s: no checksum known; sha256 of the download is %s (pin it in params)",
                    dest.name, file_digest(part, "sha256"))
    os.replace(part, dest)
    return dest


def _transfer(url: str, part: Path, timeout: float, chunk: int) -> None:
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # range past the end: the partial file is already complete
            return
        raise
    with resp:
        if have and resp.status != 206:  # server ignored the range: start over
            have = 0
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        with open(part, "ab" if have else "wb") as f, tqdm(
            total=total, initial=have, unit="B", unit_scale=True, desc=part.name[:-5],
            disable=None,
        ) as bar:
            while block := resp.read(chunk):
                f.write(block)
                bar.update(len(block))
        if total is not None and part.stat().st_size < total:
            raise ConnectionError(f"transfer ended at {part.stat().st_size} of {total} bytes")


def extract(archive: Path, dest: Path) -> None:
    """Unpack a zip/tar archive into ``dest`` through a temporary folder (all or nothing)."""
    tmp = dest.with_name(dest.name + ".extracting")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                z.extractall(tmp)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as t:
                t.extractall(tmp, filter="data")
        else:
            raise FetchError(f"{archive}: neither a zip nor a tar archive")
        dest.mkdir(parents=True, exist_ok=True)
        for item in tmp.iterdir():
            target = dest / item.name
            if target.exists():
                if target.is_dir():
                    shutil.rmtree(target)
                else:
                    target.unlink()
            os.replace(item, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def link_or_copy(src: Path, dest: Path, mode: str = "symlink") -> Path:
    """Make ``dest`` point at (``symlink``) or hold a copy of (``copy``) the folder ``src``."""
    src = Path(src).resolve()
    if not src.exists():
        raise FetchError(f"local dataset path {src} does not exist")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_symlink() or dest.is_file():
        dest.unlink()
    elif dest.is_dir():
        shutil.rmtree(dest)
    if mode == "symlink":
        dest.symlink_to(src, target_is_directory=src.is_dir())
    elif mode == "copy":
        tmp = dest.with_name(dest.name + ".copying")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp) if src.is_dir() else shutil.copy2(src, tmp)
        os.replace(tmp, dest)
    else:
        raise ValueError(f"mode must be 'symlink' or 'copy', got {mode!r}")
    return dest


def missing_message(source: DatasetSource, dest: Path, local: str | None) -> str:
    """What to download, from where, and where to put it."""
    where = f"the local path {local} does not exist" if local else "no local path is set"
    reg = " (registration required)" if source.registered else ""
    urls = "".join(f"\n  - {f.url}" for f in source.files)
    alt = "" if source.registered else f", or set datasets.{source.name}.fetch: download"
    return (
        f"dataset '{source.name}' is not available: {where}.\n"
        f"Download it from {source.homepage}{reg}{':' + urls if urls else ''}\n"
        f"then {source.instructions}, and set datasets.{source.name}.root in params.yaml to that "
        f"folder (or put it at {dest}{alt})"
    )


def fetch_dataset(name: str, dest: str | os.PathLike, local: str | os.PathLike | None = None,
                  mode: str = "symlink", checksums: dict[str, str] | None = None) -> Path:
    """Make dataset ``name`` available at ``dest``.

    ``mode`` ``symlink``/``copy`` takes it from ``local``; ``download`` fetches the public
    archives (refused for registered datasets) into ``dest/downloads`` and unpacks them.
    ``checksums`` maps archive file names to a sha256 to verify.
    """
    if name not in REGISTRY:
        raise FetchError(f"unknown dataset {name!r}; known: {', '.join(REGISTRY)}")
    source, dest = REGISTRY[name], Path(dest)
    if mode in ("symlink", "copy") and not local and dest.exists():
        pass  # the user put the dataset at dest directly
    elif mode in ("symlink", "copy"):
        if not local or not Path(local).exists():
            raise FetchError(missing_message(source, dest, str(local) if local else None))
        link_or_copy(Path(local), dest, mode)
    elif mode == "download":
        if source.registered or not source.files:
            raise FetchError(missing_message(source, dest, str(local) if local else None))
        for rf in source.files:
            sha = (checksums or {}).get(rf.filename, rf.sha256)
            archive = download(rf.url, dest / "downloads" / rf.filename, sha256=sha, md5=rf.md5)
            if rf.extract:
                extract(archive, dest)
    else:
        raise ValueError(f"fetch mode must be symlink, copy or download, got {mode!r}")
    absent = [e for e in source.expect if not (dest / e).exists()]
    if absent:
        raise FetchError(f"{dest} lacks {absent} after fetching '{name}': "
                         f"{source.instructions}")
    return dest
