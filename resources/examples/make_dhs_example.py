"""Rebuild dhs_example.fa and dhs_example_labels.tsv from the dnadiffusion wheel (see PROVENANCE.md).

Usage::

    python -m pip download --no-deps -d /tmp/dl dnadiffusion==0.0.0.dev0
    python resources/examples/make_dhs_example.py /tmp/dl/dnadiffusion-0.0.0.dev0-py3-none-any.whl

Reads the table straight out of the wheel (never installs it), checks its sha256, keeps the
training split only (``data_label == 'training'``), draws 125 rows per cell type with
``numpy.random.default_rng(20240521)`` (sorted by dhs_id first, so the draw does not depend on
file order), and writes one 200 bp sequence per line. Labels are the cell type (``TAG`` up to
the first underscore: GM12878, HepG2, K562, hESCT0).
"""

from __future__ import annotations

import csv
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

MEMBER = "dnadiffusion/data/K562_hESCT0_HepG2_GM12878_12k_sequences_per_group.txt"
SHA256 = "ba1063a9a3d0054020ae2e9f8add974550ae91fe2d21989e790e5d6cb2cb4d58"
SEED = 20240521
PER_CLASS = 125


def main(wheel: str, out_dir: str = str(Path(__file__).resolve().parent)) -> None:
    raw = zipfile.ZipFile(wheel).read(MEMBER)
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SHA256:
        raise SystemExit(f"sha256 mismatch: {digest}")
    rows = [r for r in csv.DictReader(io.StringIO(raw.decode("ascii")), delimiter="\t")
            if r["data_label"] == "training"]
    ids = [r["dhs_id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise SystemExit("dhs_id is not unique in the training split")
    rng = np.random.default_rng(SEED)
    chosen = []
    for label in sorted({r["TAG"].split("_")[0] for r in rows}):
        group = sorted((r for r in rows if r["TAG"].split("_")[0] == label),
                       key=lambda r: r["dhs_id"])
        picks = rng.choice(len(group), size=PER_CLASS, replace=False)
        chosen += [(group[i]["dhs_id"], group[i]["sequence"], label) for i in sorted(picks)]
    out = Path(out_dir)
    with open(out / "dhs_example.fa", "w", newline="\n") as fa:
        for dhs_id, seq, _ in chosen:
            fa.write(f">{dhs_id}\n{seq}\n")
    with open(out / "dhs_example_labels.tsv", "w", newline="\n") as tsv:
        tsv.write("id\tlabel\n")
        for dhs_id, _, label in chosen:
            tsv.write(f"{dhs_id}\t{label}\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
