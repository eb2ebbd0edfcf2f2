"""Shared fixtures: the bundled example (real DHS sequences) and small helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "resources" / "examples"

os.environ.setdefault("DIFFAUG_NO_BAR", "1")


@pytest.fixture(scope="session")
def example_fasta() -> Path:
    """500 real 200 bp DHS sequences (4 cell types) shipped in resources/examples."""
    return EXAMPLES / "dhs_example.fa"


@pytest.fixture(scope="session")
def example_labels() -> Path:
    """TSV (id, label) for :func:`example_fasta`."""
    return EXAMPLES / "dhs_example_labels.tsv"
