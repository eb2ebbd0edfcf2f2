"""JASPAR motif-planted synthetic sequences: determinism, lengths, planted signal."""

from __future__ import annotations

import numpy as np
import pytest

from diffaug_genomics.errors import InputError
from diffaug_genomics.synthetic import (
    format_jaspar,
    load_motifs,
    max_log_odds,
    motif_planted,
    parse_jaspar,
    write_fasta_and_labels,
)


def test_committed_motifs_parse_and_roundtrip():
    motifs = load_motifs()
    assert len(motifs) == 10
    assert {m.name for m in motifs} >= {"CTCF", "GATA1", "HNF4A", "Spi1"}
    for m in motifs:
        assert m.counts.shape == (m.width, 4) and m.width >= 6
        assert np.allclose(m.probabilities().sum(axis=1), 1.0)
        back = parse_jaspar(format_jaspar(m.matrix_id, m.name, m.counts))[0]
        assert back.matrix_id == m.matrix_id and np.array_equal(back.counts, m.counts)
    assert load_motifs(["ma0139.2", "spi1"])[1].name == "Spi1"
    with pytest.raises(InputError, match="unknown motif 'NOPE'"):
        load_motifs(["NOPE"])


def test_deterministic_and_shapes():
    a = motif_planted(20, 120, seed=3)
    assert a == motif_planted(20, 120, seed=3)
    assert a != motif_planted(20, 120, seed=4)
    ids, seqs, labels = a
    assert len(ids) == len(seqs) == len(labels) == 80 and len(set(ids)) == 80
    assert all(len(s) == 120 and set(s) <= set("ACGT") for s in seqs)
    assert sorted(set(labels)) == ["CTCF", "GATA1", "HNF4A", "Spi1"]
    assert all(labels.count(c) == 20 for c in set(labels))
    assert labels[:8] != sorted(labels[:8]) or labels[8:16] != sorted(labels[8:16])  # shuffled


def test_background_gc():
    _, seqs, _ = motif_planted(50, 400, seed=0, background_gc=0.6, n_classes=2)
    gc = np.mean([(s.count("G") + s.count("C")) / len(s) for s in seqs])
    assert abs(gc - 0.6) < 0.02  # 40,000 bases: background sd ~0.0025, motifs shift it a little


def test_each_class_scores_highest_under_its_own_motif():
    names = ["CTCF", "GATA1", "HNF4A", "SPI1", "FOXA2"]
    _, seqs, labels = motif_planted(40, 150, motifs=names, n_classes=5, seed=1)
    y = np.array(labels)
    motifs = load_motifs(names)
    scores = np.stack([max_log_odds(seqs, m) for m in motifs], axis=1)  # (N, classes)
    for j, m in enumerate(motifs):
        own = scores[y == m.name, j]
        other = scores[y != m.name, j]
        assert own.mean() > other.mean() + 3.0  # bits
        # rank separation (AUC): planted sequences beat most unplanted ones. Short motifs
        # (GATA1, 7 bp) have chance matches in 150 bp of background: about 0.9 for GATA1
        # over seeds 1-3, 0.95-1.0 for the longer ones.
        auc = (own[:, None] > other[None, :]).mean()
        assert auc > 0.85, (m.name, auc)
    z = (scores - scores.mean(axis=0)) / scores.std(axis=0)
    names_by_col = np.array([m.name for m in motifs])
    assert (names_by_col[z.argmax(axis=1)] == y).mean() > 0.85  # 0.90-0.93 over seeds 1-3


def test_argument_checks(tmp_path):
    with pytest.raises(ValueError, match="2 motifs given for n_classes=4"):
        motif_planted(5, 100, motifs=["CTCF", "GATA1"])
    with pytest.raises(ValueError, match="cannot hold"):
        motif_planted(5, 20, motifs=["CTCF"], n_classes=1)


def test_write_fasta_and_labels(tmp_path):
    ids, seqs, labels = motif_planted(3, 50, n_classes=2, seed=0)
    fa, tsv = tmp_path / "s.fa", tmp_path / "s.tsv"
    write_fasta_and_labels(fa, tsv, ids, seqs, labels)
    lines = fa.read_text().splitlines()
    assert lines[0] == f">{ids[0]}" and lines[1] == seqs[0] and len(lines) == 12
    assert tsv.read_text().splitlines()[:2] == ["id\tlabel", f"{ids[0]}\t{labels[0]}"]
    with pytest.raises(InputError, match="output exists"):
        write_fasta_and_labels(fa, tsv, ids, seqs, labels)
    write_fasta_and_labels(fa, tsv, ids, seqs, labels, force=True)
