"""Shared fixtures: the bundled example (real DHS sequences) and small helpers."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

from diffaug_genomics.alphabet import one_hot

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "resources" / "examples"

os.environ.setdefault("DIFFAUG_NO_BAR", "1")
if not os.environ.get("OMP_NUM_THREADS"):
    # one thread count for every run of the session (in this process and in the commands it
    # starts), however busy the machine is: bit-for-bit comparisons between two runs need it,
    # and the automatic choice would follow the load (tests/test_threads.py tests that)
    os.environ.setdefault("DIFFAUG_THREADS", "1")

# precision: auto keeps the seconds per step it measured in a per-machine file: the tests' own,
# not the user's (train/autotune)
os.environ.setdefault("DIFFAUG_TUNING_CACHE",
                      os.path.join(tempfile.gettempdir(), "diffaug-tests-tuning.json"))


@pytest.fixture(scope="session")
def example_fasta() -> Path:
    """500 real 200 bp DHS sequences (4 cell types) shipped in resources/examples."""
    return EXAMPLES / "dhs_example.fa"


@pytest.fixture(scope="session")
def example_labels() -> Path:
    """TSV (id, label) for :func:`example_fasta`."""
    return EXAMPLES / "dhs_example_labels.tsv"


def read_example_rows(path: Path, n: int | None = None) -> np.ndarray:
    """One-hot ``(n, 200, 4) uint8`` of the first ``n`` example records, by a plain reader."""
    seqs = [line.strip() for line in path.read_text().splitlines() if line and line[0] != ">"]
    seqs = seqs[:n] if n else seqs
    return np.stack([one_hot(s) for s in seqs])


@pytest.fixture(scope="session")
def example_h5(tmp_path_factory, example_fasta: Path, example_labels: Path) -> Path:
    """The example encoded by ``diffaug encode`` (200 bp, with its labels): one-hot HDF5."""
    from diffaug_genomics.encode import encode_fasta

    out = tmp_path_factory.mktemp("example") / "ex.h5"
    encode_fasta(example_fasta, out, length=200, labels=example_labels, show_progress=False)
    return out


@pytest.fixture
def one_thread():
    """Tiny tensors: one thread avoids oversubscription on a shared machine (use with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def example_rows(example_fasta: Path) -> np.ndarray:
    """The first 128 example sequences as ``(128, 200, 4) uint8``."""
    return read_example_rows(example_fasta, 128)


# A configuration small enough for many training runs per test session: 4 steps per epoch on
# 128 sequences, two rounds, every stage kind present.
MICRO = [
    "encoder.width=16", "encoder.embed_dim=16", "encoder.proj_hidden=32", "encoder.proj_dim=8",
    "encoder.n_blocks=1", "generator.channels=[8, 16]", "generator.time_dim=16",
    "generator.batch_size=32", "generator.steps=6", "generator.steps_per_checkpoint=3",
    "bank.steps=3", "bank.batch_size=64", "schedule.warmup_epochs=1", "schedule.rounds=2",
    "schedule.epochs_per_round=1", "optim.batch_size=32", "log_every=1", "knn.k=4",
    "knn.kmer_k=3",
]
