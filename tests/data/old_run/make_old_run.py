"""Write the old-run fixture: tiny DNA, tabular and image runs trained by release 0.x at commit
0014e6b, and what that release's ``embed`` and ``generate`` produced from them.

Run from the repository root with the release checked out (``python
tests/data/old_run/make_old_run.py``); ``tests/test_old_run.py`` checks that the current code
still embeds and generates the same arrays and FASTA from these runs. Only the files ``embed``
and ``generate`` read are kept (``config.yaml``, ``encoder.pt``, ``generator.pt``,
``preprocess.json``).
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
DIFFAUG = [sys.executable, "-m", "diffaug_genomics_cli.main"]
ENV = {**os.environ, "DIFFAUG_NO_BAR": "1"}
SMALL = ["encoder.width=8", "encoder.embed_dim=8", "encoder.proj_hidden=16", "encoder.proj_dim=8",
         "encoder.n_blocks=1", "generator.channels=[8, 16]", "generator.time_dim=16",
         "generator.batch_size=16", "generator.steps=4", "generator.steps_per_checkpoint=4",
         "bank.steps=2", "bank.batch_size=32", "schedule.warmup_epochs=1", "schedule.rounds=1",
         "schedule.epochs_per_round=1", "optim.batch_size=16", "knn.k=3", "knn.kmer_k=3"]
DNA_ONLY = ["encoder.kmer_k=3"]
KEEP = ("config.yaml", "encoder.pt", "generator.pt", "preprocess.json")


def run(*args: object) -> None:
    subprocess.run([*DIFFAUG, *map(str, args)], check=True, env=ENV, cwd=REPO)


def sets(options: list[str]) -> list[str]:
    return [a for o in options for a in ("--set", o)]


def fit(source: Path, name: str, extra: list[str], args: tuple[str, ...] = ()) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        run("fit", source, "-o", Path(tmp) / "run", "--preset", "tiny", "--seed", "0",
            *args, *sets(SMALL + extra))
        out = HERE / name
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        for f in KEEP:
            if (Path(tmp) / "run" / f).exists():
                shutil.copy(Path(tmp) / "run" / f, out / f)
    return out


def main() -> None:
    # DNA: 32 real DHS sequences of 200 bp (resources/examples), cut to their first 48 bp.
    lines = (REPO / "resources/examples/dhs_example.fa").read_text().splitlines()
    records = [(lines[i][1:], lines[i + 1][:48]) for i in range(0, 64, 2)]
    fasta = HERE / "dna_input.fa"
    fasta.write_text("".join(f">{h}\n{s}\n" for h, s in records))
    dna = fit(fasta, "dna_run", ["data.length=48", *DNA_ONLY])
    run("embed", dna, fasta, "-o", HERE / "dna_embeddings.h5", "--force")
    # the same sequences as a one-hot HDF5 with labels (diffaug encode), embedded too
    labels = (REPO / "resources/examples/dhs_example_labels.tsv").read_text().splitlines()
    (HERE / "dna_labels.tsv").write_text("\n".join(labels[:33]) + "\n")
    run("encode", fasta, "-o", HERE / "dna_input.h5", "--length", "48", "--labels",
        HERE / "dna_labels.tsv", "--force")
    run("embed", dna, HERE / "dna_input.h5", "-o", HERE / "dna_embeddings_from_h5.h5", "--force")
    run("generate", dna, fasta, "-o", HERE / "dna_positives.fa", "-k", "2", "--seed", "3",
        "--force")

    # tabular: the first 40 rows of scikit-learn's wine as CSV, labels in a column.
    from sklearn.datasets import load_digits, load_wine

    w = load_wine()
    table = HERE / "wine_input.csv"
    with open(table, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["", *w.feature_names, "cultivar"])
        for i in range(0, 178, 4)[:40]:
            out.writerow([f"w{i:03d}", *(f"{v:g}" for v in w.data[i]), f"c{w.target[i]}"])
    tab = fit(table, "tabular_run", [], ("--label-column", "cultivar"))
    run("embed", tab, table, "-o", HERE / "tabular_embeddings.h5", "--force")
    run("generate", tab, table, "-o", HERE / "tabular_positives.npy", "-k", "2", "--seed", "3",
        "--force")

    # images: the first 32 of scikit-learn's 8x8 digits as a .npy array.
    images = HERE / "digits_input.npy"
    np.save(images, load_digits().images[:32].astype(np.float32))
    img = fit(images, "image_run", [])
    run("embed", img, images, "-o", HERE / "image_embeddings.h5", "--force")
    run("generate", img, images, "-o", HERE / "image_positives.h5", "-k", "2", "--seed", "3",
        "--force")


if __name__ == "__main__":
    main()
