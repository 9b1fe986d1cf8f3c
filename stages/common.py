"""What every stage script shares: params, logging, seeding. Stages are thin: read params, call
the library, write the stage's outs."""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("ANNY_CACHE_DIR", str(REPO / "data" / "cache" / "anny"))


class _ParamsLoader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-4`` (no dot) as a string; this loader reads it as the number meant."""


_ParamsLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def load_params(path: str | os.PathLike = REPO / "params.yaml") -> dict[str, Any]:
    """The params file as a dict, after checking every section's keys and types
    (:mod:`texturepose.params_schema`): a missing file, a YAML error or a typo stops the stage
    (exit status 1, no traceback), naming the file and line or the key."""
    from texturepose.params_schema import ParamsError, validate_params

    try:
        with open(path) as f:
            params = yaml.load(f, Loader=_ParamsLoader)  # noqa: S506 - a SafeLoader subclass
    except FileNotFoundError:
        raise SystemExit(f"error: params file {path} does not exist: give --params the path of "
                         "your params.yaml (the repository's is the default)") from None
    except yaml.YAMLError as e:
        raise SystemExit(f"error: {path} is not valid YAML: {e}".replace("\n", " ")) from None
    if not isinstance(params, dict):
        what = "empty" if params is None else f"a YAML {type(params).__name__}"
        raise SystemExit(f"error: {path} is {what}, expected a mapping of sections (seed:, "
                         "body:, mocap: ...): start from the repository's params.yaml")
    try:
        validate_params(params, str(path))
    except ParamsError as e:
        raise SystemExit(f"error: {e}") from None
    return params


#: Set to 1 to see the traceback of an input error instead of its one-line message.
TRACEBACK_ENV = "TEXTUREPOSE_TRACEBACK"


@contextlib.contextmanager
def input_errors(stage: str) -> Iterator[None]:
    """End the stage with the message (exit status 1) on a bad input or output path: the
    library's errors name the file and what to do, and a traceback would bury that line.
    ``TEXTUREPOSE_TRACEBACK=1`` re-raises them instead."""
    try:
        yield
    except (OSError, ValueError) as e:
        if os.environ.get(TRACEBACK_ENV) == "1":
            raise
        msg = str(e)
        if isinstance(e, OSError) and e.filename and not isinstance(e, FileNotFoundError):
            msg += ": check that the folder exists, is a folder and is writable"
        raise SystemExit(f"{stage}: {msg}") from None


def set_key(params: dict[str, Any], dotted: str, value: Any) -> None:
    """``set_key(p, "train.steps", 10)`` sets ``p["train"]["steps"]``; a missing section or key
    is an error naming it (an override with a typo must not create a new, unused key)."""
    *path, last = dotted.split(".")
    node = params
    for i, key in enumerate(path):
        if not isinstance(node, dict) or key not in node:
            raise KeyError(f"override {dotted!r}: params have no {'.'.join(path[: i + 1])!r}")
        node = node[key]
    if not isinstance(node, dict) or last not in node:
        raise KeyError(f"override {dotted!r}: params have no key {dotted!r}")
    node[last] = value


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
