"""The 48 maps of a four-letter sequence that need no knowledge of what the letters mean.

A map renames the letters by one of the 24 permutations of the alphabet and optionally reverses
the sequence. Which of them (if any) leave a data set's statistics unchanged is measured on the
data (:mod:`diffaug_genomics.symmetry`); nothing here says which one a genome obeys. The
identity is :data:`MAPS` ``[0]``.

A map acts on model-layout tensors ``(N, 4, L)`` (:meth:`AlphabetMap.apply`), on stored rows
``(N, L, 4)`` (:meth:`AlphabetMap.apply_rows`) and on k-mer statistics: the k-mer ``w`` of a
sequence is the k-mer ``g(w)`` of the mapped sequence, so the spectrum of ``g(x)`` is a column
permutation of the spectrum of ``x`` (:meth:`AlphabetMap.kmer_columns`).

Examples:
    >>> m = by_name("reversed, ACGT->TGCA")
    >>> m.perm, m.reverse
    ((3, 2, 1, 0), True)
    >>> m.compose(m) == MAPS[0]
    True
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch

from diffaug_genomics.alphabet import ALPHABET

__all__ = ["MAPS", "AlphabetMap", "by_name", "closure"]


@dataclass(frozen=True)
class AlphabetMap:
    """Letter ``i`` becomes letter ``perm[i]`` (channel order A, C, G, T); then the sequence is
    read backwards when ``reverse``."""

    perm: tuple[int, int, int, int]
    reverse: bool

    @property
    def name(self) -> str:
        """``identity``, ``reversed``, ``ACGT->TGCA`` or ``reversed, ACGT->TGCA``."""
        letters = "".join(ALPHABET[p] for p in self.perm)
        parts = (["reversed"] if self.reverse else []) + (
            [f"{ALPHABET}->{letters}"] if letters != ALPHABET else [])
        return ", ".join(parts) or "identity"

    @property
    def index(self) -> int:
        """Position of this map in :data:`MAPS`."""
        return MAPS.index(self)

    def _inverse_perm(self) -> list[int]:
        inv = [0] * 4
        for i, p in enumerate(self.perm):
            inv[p] = i
        return inv

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``x (N, 4, L)`` (one-hot or continuous) -> the mapped sequences, same shape."""
        out = x[:, self._inverse_perm()]
        return out.flip(-1) if self.reverse else out

    def apply_rows(self, rows: np.ndarray) -> np.ndarray:
        """Stored rows ``(N, L, 4)`` -> the mapped rows, same shape and dtype."""
        out = rows[..., self._inverse_perm()]
        return np.ascontiguousarray(out[..., ::-1, :] if self.reverse else out)

    def kmer_columns(self, k: int) -> np.ndarray:
        """``(4**k,) int64``: column ``c`` of the mapped sequence's k-mer spectrum is column
        ``kmer_columns(k)[c]`` of the original's (``spectrum(g(x)) = spectrum(x)[:, cols]``)."""
        return _kmer_columns(self, k)

    def compose(self, other: AlphabetMap) -> AlphabetMap:
        """``self`` after ``other``: ``(self o other)(x) = self(other(x))``."""
        perm = tuple(self.perm[other.perm[i]] for i in range(4))
        return AlphabetMap(perm, self.reverse != other.reverse)  # type: ignore[arg-type]


@cache
def _kmer_columns(m: AlphabetMap, k: int) -> np.ndarray:
    codes = np.arange(4**k, dtype=np.int64)
    digits = (codes[:, None] // 4 ** np.arange(k - 1, -1, -1)) % 4  # (4**k, k), first letter first
    mapped = np.asarray(m.perm)[digits]
    if m.reverse:
        mapped = mapped[:, ::-1]
    image = (mapped * 4 ** np.arange(k - 1, -1, -1)).sum(axis=1)  # g(w) for each w
    cols = np.empty_like(image)
    cols[image] = codes  # the mapped spectrum at g(w) is the original at w
    cols.setflags(write=False)
    return cols


MAPS: tuple[AlphabetMap, ...] = tuple(
    AlphabetMap(perm, rev)  # type: ignore[arg-type]
    for perm in itertools.permutations(range(4)) for rev in (False, True))
"""Every map, the identity first (permutations in lexicographic order, each without and with
reversal)."""


def by_name(name: str) -> AlphabetMap:
    """The map called ``name`` (:attr:`AlphabetMap.name`); ValueError for an unknown name."""
    for m in MAPS:
        if m.name == name:
            return m
    raise ValueError(f"no alphabet map is called {name!r} (names look like 'reversed', "
                     f"'{ALPHABET}->TGCA' or 'reversed, {ALPHABET}->TGCA')")


def closure(maps: list[AlphabetMap]) -> list[AlphabetMap]:
    """The smallest group holding ``maps`` and the identity, in :data:`MAPS` order."""
    group = {MAPS[0], *maps}
    while True:
        grown = group | {a.compose(b) for a in group for b in group}
        if grown == group:
            return sorted(group, key=MAPS.index)
        group = grown
