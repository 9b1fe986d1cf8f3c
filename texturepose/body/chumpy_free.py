"""Read SMPL-family model files (.pkl, .npz) without chumpy and without running pickled code.

The official SMPL ``.pkl`` files pickle some arrays as ``chumpy.ch.Ch`` objects and the joint
regressor as a ``scipy.sparse`` matrix. chumpy does not install on current Python/numpy, and a
plain ``pickle.load`` would run whatever the file names. :class:`SafeUnpickler` resolves only a
short allow-list (numpy array reconstruction, ``copyreg``'s object rebuild, ``_codecs.encode``)
and turns every other class into an inert stand-in that just records its pickled state. Afterwards
a chumpy ``Ch`` becomes its value (``__dict__['x']``, see chumpy's ``Ch.__getstate__``) and a
sparse matrix becomes a dense array. ``.npz`` files are read with ``allow_pickle=False``; only
members holding object arrays go through the same restricted unpickler.
"""

from __future__ import annotations

import codecs
import copyreg
import logging
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse

from texturepose.body.base import BodyModelError

log = logging.getLogger(__name__)


class PickledObject:
    """Inert stand-in for a class the file names but that we do not import."""

    pickled_name = "?"
    args: tuple = ()
    state: Any = None

    def __new__(cls, *args: Any, **kwargs: Any) -> PickledObject:
        obj = super().__new__(cls)
        obj.args = args
        obj.state = None
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<pickled {self.pickled_name}>"


_STANDINS: dict[str, type[PickledObject]] = {}


def _standin(module: str, name: str) -> type[PickledObject]:
    full = f"{module}.{name}"
    if full not in _STANDINS:
        _STANDINS[full] = type(name, (PickledObject,), {"pickled_name": full})
    return _STANDINS[full]


_NUMPY_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's own _reconstruct
_NUMPY_SCALAR = np.float64(0).__reduce__()[0]
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("copy_reg", "_reconstructor"): copyreg._reconstructor,
    ("copyreg", "_reconstructor"): copyreg._reconstructor,
    ("__builtin__", "object"): object,
    ("builtins", "object"): object,
    ("_codecs", "encode"): codecs.encode,
}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_mod, "_reconstruct")] = _NUMPY_RECONSTRUCT
    _ALLOWED[(_mod, "scalar")] = _NUMPY_SCALAR


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that imports nothing outside :data:`_ALLOWED` (see the module docstring)."""

    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED.get((module, name))
        return found if found is not None else _standin(module, name)


class UnreadableField:
    """A field whose pickled object cannot be turned into an array without its library."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"<unreadable: {self.reason}>"


def _sparse_to_dense(obj: PickledObject) -> np.ndarray | UnreadableField:
    state = obj.state if isinstance(obj.state, dict) else {}
    fmt = obj.pickled_name.rsplit(".", 1)[-1]
    shape = state.get("_shape", state.get("shape"))
    try:
        if fmt in ("csc_matrix", "csr_matrix", "csc_array", "csr_array"):
            cls = scipy.sparse.csc_matrix if fmt.startswith("csc") else scipy.sparse.csr_matrix
            mat = cls((state["data"], state["indices"], state["indptr"]), shape=shape)
        elif fmt in ("coo_matrix", "coo_array"):
            mat = scipy.sparse.coo_matrix((state["data"], (state["row"], state["col"])), shape)
        else:
            return UnreadableField(f"sparse format {obj.pickled_name} is not supported")
    except (KeyError, TypeError, ValueError) as e:
        return UnreadableField(f"broken {obj.pickled_name} ({e})")
    return np.asarray(mat.toarray())


def materialize(value: Any) -> Any:
    """Turn stand-ins into numpy arrays where their meaning is known (chumpy Ch, scipy sparse)."""
    if isinstance(value, PickledObject):
        name = value.pickled_name
        if name.startswith("chumpy."):
            state = value.state if isinstance(value.state, dict) else {}
            if "x" in state:
                inner = materialize(state["x"])
                return np.asarray(inner) if not isinstance(inner, UnreadableField) else inner
            return UnreadableField(
                f"a chumpy expression ({name}) rather than a stored array; convert the file with "
                "chumpy installed (np.array(value)) and save it as .npz"
            )
        if name.startswith("scipy.sparse"):
            return _sparse_to_dense(value)
        return value
    if isinstance(value, np.ndarray) and value.dtype == object:
        if value.ndim == 0:
            return materialize(value.item())
        return value
    if isinstance(value, dict):
        return {k: materialize(v) for k, v in value.items()}
    return value


def _read_npz(path: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with np.load(path, allow_pickle=False) as npz:
        for key in npz.files:
            try:
                out[key] = npz[key]
            except ValueError:  # an object array: read it through the restricted unpickler
                out[key] = _read_object_member(path, key)
    return out


def _read_object_member(path: Path, key: str) -> Any:
    with zipfile.ZipFile(path) as zf, zf.open(key + ".npy") as fp:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            np.lib.format.read_array_header_1_0(fp)
        else:
            np.lib.format.read_array_header_2_0(fp)
        return SafeUnpickler(fp, encoding="latin1").load()


def model_error(path: Path | str, wanted: str, source: str, problem: str) -> BodyModelError:
    """The one message for unusable model files: path, problem, wanted file, its source."""
    return BodyModelError(
        f"{path}: {problem}. Expected {wanted}, downloaded from {source}; put it at this path "
        "or point the body model path in params.yaml (body section) at it."
    )


def load_model_file(path: Path | str, wanted: str, source: str) -> dict[str, Any]:
    """Load a ``.pkl`` or ``.npz`` model file into a dict of numpy arrays and plain values.

    ``wanted`` names the expected file and ``source`` where a user gets it; both go into the
    :class:`BodyModelError` raised for a missing, unreadable or non-dict file.
    """
    path = Path(path)
    if not path.is_file():
        raise model_error(path, wanted, source, "model file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            data: Any = _read_npz(path)
        elif suffix == ".pkl":
            with open(path, "rb") as f:
                data = SafeUnpickler(f, encoding="latin1").load()
        else:
            raise model_error(
                path, wanted, source, f"unknown extension {suffix!r} (want .pkl/.npz)"
            )
    except BodyModelError:
        raise
    except (pickle.UnpicklingError, zipfile.BadZipFile, ValueError, EOFError, OSError) as e:
        raise model_error(path, wanted, source, f"cannot read the file ({e})") from e
    if not isinstance(data, dict):
        raise model_error(
            path, wanted, source, f"holds a {type(data).__name__}, not a dict of model arrays"
        )
    out = materialize(data)
    log.debug("read %s: keys %s", path, sorted(out))
    return out


def check_fields(
    data: dict[str, Any],
    spec: dict[str, tuple[int | str | None, ...]],
    path: Path | str,
    wanted: str,
    source: str,
    sizes: dict[str, int] | None = None,
) -> dict[str, np.ndarray]:
    """Check that ``data`` has every key of ``spec`` as a numeric array of the given shape.

    A shape entry is an int (exact), a symbol such as ``"V"`` (equal wherever it appears; bound by
    the first array or preset in ``sizes``) or None (any). Returns the arrays as numpy arrays.
    """
    sizes = dict(sizes or {})
    out: dict[str, np.ndarray] = {}
    for key, dims in spec.items():
        if key not in data:
            raise model_error(
                path, wanted, source, f"key {key!r} is missing (found keys {sorted(data)})"
            )
        value = data[key]
        if isinstance(value, UnreadableField):
            raise model_error(path, wanted, source, f"key {key!r} is {value.reason}")
        arr = np.asarray(value)
        if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
            raise model_error(path, wanted, source, f"key {key!r} is not a numeric array")
        bad = arr.ndim != len(dims)
        for n, d in zip(arr.shape, dims, strict=False):
            if isinstance(d, int):
                bad |= n != d
            elif isinstance(d, str):
                bad |= sizes.setdefault(d, n) != n
        if bad:
            want = tuple(sizes.get(d, d) if isinstance(d, str) else d for d in dims)
            raise model_error(
                path, wanted, source, f"key {key!r} has shape {arr.shape}, expected {want}"
            )
        out[key] = arr
    return out
