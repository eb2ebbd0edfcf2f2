"""The alphabet: lookup tables, one-hot, decode, reverse complement, GC, against plain Python."""

from __future__ import annotations

import numpy as np
import pytest

from diffaug_genomics import alphabet as ab

CHANNEL = {"A": 0, "C": 1, "G": 2, "T": 3, "U": 3}


def ref_one_hot(seq: str) -> np.ndarray:
    """Independent per-character encoding (no lookup tables)."""
    out = np.zeros((len(seq), 4), dtype=np.uint8)
    for i, ch in enumerate(seq):
        if ch.upper() in CHANNEL:
            out[i, CHANNEL[ch.upper()]] = 1
    return out


def test_base_index_classifies_every_byte():
    for byte in range(256):
        ch = chr(byte)
        code = int(ab.BASE_INDEX[byte])
        if ch.upper() in CHANNEL:
            assert code == CHANNEL[ch.upper()], ch
        elif ch.upper() in "NRYSWKMBDHV":
            assert code == ab.AMBIGUOUS, ch
        else:
            assert code == ab.INVALID, repr(ch)


def test_one_hot_matches_reference_for_case_u_and_iupac():
    seq = "ACGTacgtUuNnRYSWKMBDHVrysw"
    got = ab.one_hot(seq)
    assert got.dtype == np.uint8 and got.shape == (len(seq), 4)
    np.testing.assert_array_equal(got, ref_one_hot(seq))
    assert got[10:].sum() == 0  # every ambiguity code is an all-zero row


def test_invalid_positions_names_non_nucleotides():
    assert ab.invalid_positions(b"AC1G*-T.").tolist() == [2, 4, 5, 7]
    assert ab.invalid_positions(b"ACGTN").size == 0


def test_decode_roundtrip_and_zero_rows_as_n():
    seqs = ["ACGTNNAC", "ttgcaRYA"]
    onehot = np.stack([ab.one_hot(s) for s in seqs])
    assert ab.decode(onehot) == ["ACGTNNAC", "TTGCANNA"]
    assert ab.decode(onehot[0]) == "ACGTNNAC"


def test_reverse_complement_flips_positions_and_channels():
    onehot = ab.one_hot("AACGTN")
    assert ab.decode(ab.reverse_complement(onehot)) == "NACGTT"
    torch = pytest.importorskip("torch")
    x = torch.from_numpy(onehot.T.copy()).float()[None]  # (1, 4, L)
    rc = ab.reverse_complement_tensor(x)[0].numpy().T.astype(np.uint8)
    assert ab.decode(rc) == "NACGTT"


def test_gc_content_over_called_bases():
    onehot = np.stack([ab.one_hot("GGCCNNAT"), ab.one_hot("NNNNNNNN")])
    np.testing.assert_allclose(ab.gc_content(onehot), [4 / 6, 0.0])
