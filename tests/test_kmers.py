"""k-mer counting against an independent per-sequence count over strings."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from diffaug_genomics import kmers
from diffaug_genomics.alphabet import one_hot
from diffaug_genomics.kmers import kmer_counts, kmer_names


def _random_batch(rng: np.random.Generator, n: int, length: int) -> tuple[list[str], np.ndarray]:
    """Strings with N and ambiguity codes, of varying length, zero-padded to ``length``."""
    seqs = []
    for _ in range(n):
        m = int(rng.integers(0, length + 1))
        s = rng.choice(list("ACGTACGTACGTNacgtR"), size=m)
        seqs.append("".join(s))
    arr = np.zeros((n, length, 4), dtype=np.uint8)
    for i, s in enumerate(seqs):
        arr[i, :len(s)] = one_hot(s)
    return seqs, arr


def _reference(seqs: list[str], k: int) -> np.ndarray:
    names = {name: j for j, name in enumerate(kmer_names(k))}
    out = np.zeros((len(seqs), 4**k))
    for i, s in enumerate(seqs):
        s = s.upper()
        counts = Counter(s[p:p + k] for p in range(len(s) - k + 1))
        for kmer, c in counts.items():
            if set(kmer) <= set("ACGT"):
                out[i, names[kmer]] = c
    return out


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_counts_match_counter_with_n_and_padding(k: int) -> None:
    seqs, arr = _random_batch(np.random.default_rng(k), 40, 60)
    ref = _reference(seqs, k)
    got = kmer_counts(arr, k, normalize=False)
    assert got.dtype == np.float32 and got.shape == (40, 4**k)
    np.testing.assert_array_equal(got, ref)
    freq = kmer_counts(arr, k)
    totals = ref.sum(1, keepdims=True)
    expect = np.divide(ref, totals, out=np.zeros_like(ref), where=totals > 0)
    np.testing.assert_allclose(freq, expect, rtol=1e-6, atol=1e-7)
    rows = totals[:, 0] > 0
    np.testing.assert_allclose(freq[rows].sum(1), 1.0, rtol=1e-5)
    assert (freq[~rows] == 0).all()


def test_names_and_index_order() -> None:
    names = kmer_names(2)
    assert names[:5] == ["AA", "AC", "AG", "AT", "CA"] and len(names) == 16
    for name in ["ACGT", "TTTA", "GATC"]:
        idx = sum("ACGT".index(b) * 4 ** (3 - i) for i, b in enumerate(name))
        counts = kmer_counts(one_hot(name)[None], 4, normalize=False)
        assert counts[0, idx] == 1 and counts.sum() == 1
        assert kmer_names(4)[idx] == name


def test_chunking_does_not_change_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    seqs, arr = _random_batch(np.random.default_rng(0), 25, 30)
    whole = kmer_counts(arr, 3)
    monkeypatch.setattr(kmers, "_CHUNK_ROWS", 4)
    np.testing.assert_array_equal(kmer_counts(arr, 3), whole)


def test_edge_cases() -> None:
    arr = one_hot("ACG")[None]
    assert (kmer_counts(arr, 4) == 0).all()  # shorter than k
    assert kmer_counts(np.zeros((0, 10, 4), np.uint8), 2).shape == (0, 16)
    with pytest.raises(ValueError):
        kmer_counts(np.zeros((2, 10)), 2)
    with pytest.raises(ValueError):
        kmer_counts(arr, 0)
