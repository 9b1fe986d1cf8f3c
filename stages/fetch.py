"""Stage: make every enabled raw dataset available under data/raw/real/<name>.

    python stages/fetch.py [name ...]

Reads params.yaml ``datasets.<name>``: ``enabled``, ``root`` (a local folder: linked or copied),
``fetch`` (symlink | copy | download) and ``checksums`` (archive name -> sha256). When a dataset
is missing it prints what to download, from where and where to put it, and exits non-zero.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script

from stages.common import REPO, load_params, setup_logging
from texturepose.datasets.fetch import FetchError, fetch_dataset

log = logging.getLogger("fetch")


def enabled_datasets(section: dict, names: list[str]) -> list[str]:
    known = [k for k, v in section.items() if isinstance(v, dict)]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown dataset(s) {unknown}; params.yaml datasets has {known}")
    return names or [k for k in known if section[k].get("enabled", False)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default=str(REPO / "params.yaml"))
    ap.add_argument("names", nargs="*", help="datasets to fetch (default: all enabled)")
    ap.add_argument("--out-dir", default=str(REPO / "data" / "raw" / "real"))
    args = ap.parse_args()
    setup_logging()
    section = load_params(args.params).get("datasets", {})
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in enabled_datasets(section, args.names):
        cfg = section[name]
        root = cfg.get("root")
        if root and not Path(root).is_absolute():
            root = str((REPO / root).resolve())
        try:
            dest = fetch_dataset(name, out_dir / name, local=root, mode=cfg.get("fetch", "symlink"),
                                 checksums=cfg.get("checksums"))
            log.info("%s ready at %s", name, dest)
        except FetchError as e:
            log.error("%s", e)
            failed.append(name)
    if failed:
        log.error("datasets not available: %s (disable them in params.yaml or follow the "
                  "instructions above)", failed)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
