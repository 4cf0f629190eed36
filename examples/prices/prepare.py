"""Write Gapminder's country-year table as ``OUT_DIR/gapminder.parquet`` for the prices example.

Usage::

    python examples/prices/prepare.py [OUT_DIR]      # default: data

The table comes from the installed ``bokeh-sampledata`` package (``pip install
'conveyor[examples]'``); nothing is downloaded. Rows missing life expectancy, fertility or
population are left out, which keeps 202 countries with 50 years (1964-2013) each.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

COLUMNS = ["country", "region", "year", "fertility", "life_expectancy", "population"]


def main(argv: Sequence[str] | None = None) -> int:
    """Write the table; exit 2 with one line if ``bokeh-sampledata`` is not installed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("out_dir", nargs="?", default="data", type=Path)
    args = parser.parse_args(argv)
    try:
        from bokeh_sampledata.gapminder import data
    except ImportError:
        print(
            "error: bokeh-sampledata is not installed; pip install 'conveyor[examples]'",
            file=sys.stderr,
        )
        return 2
    table = data[COLUMNS].dropna(subset=["fertility", "life_expectancy", "population"])
    table = table.astype({"country": str, "region": str}).reset_index(drop=True)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / "gapminder.parquet"
    table.to_parquet(out, index=False)
    print(f"wrote {out}: {len(table)} rows, {table['country'].nunique()} countries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
