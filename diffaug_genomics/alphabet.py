"""The DNA alphabet: the one home for base order, lookup tables and reverse complement.

One-hot arrays are ``(..., L, 4)`` ``uint8`` on disk (channel order A, C, G, T) and
``(N, 4, L)`` float tensors in models. A, C, G, T (any case) set one channel; U counts as T;
N and every other IUPAC ambiguity code give an all-zero row, as does padding.
"""

from __future__ import annotations

import numpy as np

ALPHABET: str = "ACGT"
"""Channel order of every one-hot array in this project."""

IUPAC_AMBIGUOUS: str = "NRYSWKMBDHV"
"""Ambiguity codes: valid input, encoded as an all-zero row."""

AMBIGUOUS: int = -1
"""Code in :data:`BASE_INDEX` for an ambiguity code (all-zero row)."""

INVALID: int = -2
"""Code in :data:`BASE_INDEX` for a byte that is not a nucleotide."""


def _build_index() -> np.ndarray:
    table = np.full(256, INVALID, dtype=np.int8)
    for i, base in enumerate(ALPHABET):
        table[ord(base)] = i
        table[ord(base.lower())] = i
    table[ord("U")] = table[ord("u")] = 3
    for code in IUPAC_AMBIGUOUS:
        table[ord(code)] = table[ord(code.lower())] = AMBIGUOUS
    return table


BASE_INDEX: np.ndarray = _build_index()
"""``(256,) int8``: byte -> channel 0..3, :data:`AMBIGUOUS` or :data:`INVALID`."""


def _build_onehot_table() -> np.ndarray:
    table = np.zeros((256, 4), dtype=np.uint8)
    for byte in range(256):
        if BASE_INDEX[byte] >= 0:
            table[byte, BASE_INDEX[byte]] = 1
    return table


ONEHOT_TABLE: np.ndarray = _build_onehot_table()
"""``(256, 4) uint8``: byte -> one-hot row (all zero for ambiguity codes and invalid bytes)."""


def invalid_positions(seq: bytes | np.ndarray) -> np.ndarray:
    """Indices of bytes in ``seq`` that are neither bases nor IUPAC codes, ``(k,) int64``."""
    arr = np.frombuffer(seq, dtype=np.uint8) if isinstance(seq, bytes | bytearray) else seq
    return np.flatnonzero(BASE_INDEX[arr] == INVALID)


def one_hot(seq: bytes | str) -> np.ndarray:
    """One-hot encode one sequence: ``(L, 4) uint8``. Invalid bytes become all-zero rows;
    callers that must reject them check :func:`invalid_positions` first."""
    raw = seq.encode("ascii") if isinstance(seq, str) else seq
    return ONEHOT_TABLE[np.frombuffer(raw, dtype=np.uint8)]


def decode(onehot: np.ndarray) -> list[str]:
    """Decode ``(N, L, 4)`` (or ``(L, 4)``) one-hot or scores to bases by argmax.

    Rows whose values are all zero decode to ``N``. Returns one string per sequence.
    """
    arr = np.asarray(onehot)
    single = arr.ndim == 2
    if single:
        arr = arr[None]
    letters = np.frombuffer(ALPHABET.encode(), dtype=np.uint8)
    idx = arr.argmax(axis=-1)
    out = letters[idx]
    out[(arr == 0).all(axis=-1)] = ord("N")
    strings = [row.tobytes().decode("ascii") for row in out]
    return strings[0] if single else strings  # type: ignore[return-value]


def reverse_complement(onehot: np.ndarray) -> np.ndarray:
    """Reverse complement of ``(..., L, 4)`` one-hot: flip positions, and channels (A<->T, C<->G)."""
    return np.ascontiguousarray(onehot[..., ::-1, ::-1])


def reverse_complement_tensor(x):  # noqa: ANN001, ANN201 - torch imported lazily
    """Reverse complement of a model-layout tensor ``(N, 4, L)``: flip channels and positions."""
    return x.flip(dims=(-2, -1))


def gc_content(onehot: np.ndarray) -> np.ndarray:
    """GC fraction per sequence over called bases, ``(N,) float64`` from ``(N, L, 4)``."""
    counts = np.asarray(onehot, dtype=np.float64).sum(axis=-2)  # (N, 4)
    called = counts.sum(axis=-1)
    return np.divide(counts[..., 1] + counts[..., 2], called, out=np.zeros_like(called),
                     where=called > 0)
