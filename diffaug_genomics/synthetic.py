"""Synthetic DNA with known ground truth: JASPAR motifs planted in an i.i.d. background.

Class ``c`` of :func:`motif_planted` carries 1 to ``motifs_per_seq`` instances of class ``c``'s
position frequency matrix (PFM), each sampled base by base from the PFM, at a random
non-overlapping position and on a random strand; every other base is drawn i.i.d. with the given
GC content. The label is the motif's name. A trained encoder should separate the classes far
better than a random one, which makes this the fast end-to-end test set.

PFMs come only from the JASPAR 2024 matrices committed in ``resources/motifs/`` (CC BY 4.0, see
``resources/motifs/README.md``); nothing here touches the network.

Examples:
    >>> from diffaug_genomics.synthetic import motif_planted
    >>> ids, seqs, labels = motif_planted(n_per_class=10, length=100, seed=0)
    >>> len(ids), len(seqs[0]), sorted(set(labels))
    (40, 100, ['CTCF', 'GATA1', 'HNF4A', 'Spi1'])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

import numpy as np

from diffaug_genomics.alphabet import ALPHABET, ONEHOT_TABLE
from diffaug_genomics.errors import InputError
from diffaug_genomics.io.atomic import atomic_output, check_output

MOTIF_FILE = "jaspar2024_core.txt"
"""File in ``resources/motifs/`` holding the committed PFMs in JASPAR format."""

DEFAULT_MOTIFS: tuple[str, ...] = (
    "CTCF", "GATA1", "HNF4A", "SPI1", "FOXA2", "CEBPB", "Pou5f1::Sox2", "HNF1A", "EBF1", "NFE2",
)
"""Class order used when ``motifs`` is None: class ``c`` gets ``DEFAULT_MOTIFS[c]``."""


@dataclass(frozen=True)
class Motif:
    """A JASPAR PFM: ``counts`` is ``(W, 4) float64``, columns A, C, G, T."""

    matrix_id: str
    name: str
    counts: np.ndarray

    @property
    def width(self) -> int:
        """Number of positions W."""
        return int(self.counts.shape[0])

    def probabilities(self, pseudocount: float = 0.0) -> np.ndarray:
        """Per-position base probabilities ``(W, 4)``: ``(counts + pseudocount)`` normalised."""
        c = self.counts + pseudocount
        return c / c.sum(axis=1, keepdims=True)


def parse_jaspar(text: str, source: str = "<jaspar>") -> list[Motif]:
    """Parse JASPAR-format matrices (``>ID NAME`` then rows ``A [ counts ]`` for A, C, G, T)."""
    motifs: list[Motif] = []
    header: tuple[str, str] | None = None
    rows: dict[str, list[float]] = {}

    def finish(lineno: int) -> None:
        if header is None:
            return
        if sorted(rows) != sorted(ALPHABET) or len({len(v) for v in rows.values()}) != 1:
            raise InputError(f"matrix {header[0]} needs rows A, C, G, T of equal length",
                             path=source, line=lineno)
        counts = np.array([rows[b] for b in ALPHABET], dtype=np.float64).T
        motifs.append(Motif(header[0], header[1], counts))

    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(">"):
            finish(lineno)
            parts = line[1:].split(None, 1)
            if not parts:
                raise InputError("empty matrix header", path=source, line=lineno)
            header = (parts[0], parts[1].strip() if len(parts) > 1 else parts[0])
            rows = {}
            continue
        base, _, values = line.partition(" ")
        if header is None or base.upper() not in ALPHABET or base.upper() in rows:
            raise InputError(f"unexpected line {line[:30]!r}", path=source, line=lineno)
        try:
            rows[base.upper()] = [float(v) for v in values.replace("[", " ").replace("]", " ")
                                  .split()]
        except ValueError:
            raise InputError("non-numeric count", path=source, line=lineno) from None
    finish(lineno + 1 if text else 1)
    return motifs


def format_jaspar(matrix_id: str, name: str, counts: np.ndarray) -> str:
    """Format one ``(W, 4)`` count matrix as a JASPAR-format record (inverse of
    :func:`parse_jaspar`)."""
    counts = np.asarray(counts, dtype=np.float64)
    lines = [f">{matrix_id}\t{name}"]
    for j, base in enumerate(ALPHABET):
        values = " ".join(f"{v:6g}" for v in counts[:, j])
        lines.append(f"{base}  [ {values} ]")
    return "\n".join(lines) + "\n"


@lru_cache(maxsize=1)
def _committed_motifs() -> tuple[Motif, ...]:
    resource = files("diffaug_genomics.resources").joinpath("motifs", MOTIF_FILE)
    return tuple(parse_jaspar(resource.read_text(encoding="utf-8"), source=str(resource)))


def load_motifs(names: Sequence[str] | None = None) -> list[Motif]:
    """The committed JASPAR PFMs, all or those named (by name or matrix id, case-insensitive).

    Raises :class:`InputError` for a name that is not committed, listing those that are.
    """
    available = _committed_motifs()
    if names is None:
        return list(available)
    index = {}
    for m in available:
        index[m.name.lower()] = m
        index[m.matrix_id.lower()] = m
    out = []
    for name in names:
        if name.lower() not in index:
            raise InputError(f"unknown motif {name!r}; committed: "
                             f"{', '.join(m.name for m in available)}")
        out.append(index[name.lower()])
    return out


def background_probabilities(gc: float) -> np.ndarray:
    """i.i.d. base probabilities ``(4,)`` (A, C, G, T) with GC fraction ``gc``."""
    if not 0.0 < gc < 1.0:
        raise ValueError(f"background GC must be in (0, 1), got {gc}")
    return np.array([(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2])


def log_odds(motif: Motif, background_gc: float = 0.42, pseudocount: float = 0.25) -> np.ndarray:
    """Position weight matrix ``(W, 4)``: log2 of PFM probability over background probability."""
    return np.log2(motif.probabilities(pseudocount) / background_probabilities(background_gc))


def max_log_odds(seqs: Sequence[str], motif: Motif, background_gc: float = 0.42) -> np.ndarray:
    """Best motif match per sequence, both strands: ``(N,) float64`` max log-odds score (bits).

    Sequences must share one length of at least the motif width; ambiguity codes score 0.
    """
    onehot = np.stack([ONEHOT_TABLE[np.frombuffer(s.encode("ascii"), np.uint8)] for s in seqs])
    onehot = onehot.astype(np.float64)  # (N, L, 4)
    pwm = log_odds(motif, background_gc)
    windows = np.lib.stride_tricks.sliding_window_view(onehot, motif.width, axis=1)  # (N,P,4,W)
    forward = np.einsum("npbw,wb->np", windows, pwm)
    reverse = np.einsum("npbw,wb->np", windows, pwm[::-1, ::-1])
    return np.maximum(forward, reverse).max(axis=1)


def motif_planted(n_per_class: int, length: int, motifs: list[str] | None = None,
                  n_classes: int = 4, seed: int = 0, background_gc: float = 0.42,
                  motifs_per_seq: int = 2) -> tuple[list[str], list[str], list[str]]:
    """Motif-planted sequences with known labels: ``(ids, seqs, labels)``.

    Args:
        n_per_class: sequences per class.
        length: sequence length in bp (at least ``motifs_per_seq`` times the widest motif).
        motifs: one committed motif per class (names or matrix ids, see :func:`load_motifs`);
            None takes the first ``n_classes`` of :data:`DEFAULT_MOTIFS`. When given, its length
            must equal ``n_classes``.
        n_classes: number of classes.
        seed: everything is a deterministic function of the arguments.
        background_gc: GC fraction of the i.i.d. background.
        motifs_per_seq: each sequence carries between 1 and this many instances of its class's
            motif (uniformly), at non-overlapping random positions, each on a random strand.

    Returns:
        ids ``synth_000001``..., sequences (uppercase ACGT strings) and labels (motif names),
        in a seeded random order (classes interleaved).
    """
    if motifs is None:
        if not 1 <= n_classes <= len(DEFAULT_MOTIFS):
            raise ValueError(f"n_classes must be 1..{len(DEFAULT_MOTIFS)}, got {n_classes}")
        motifs = list(DEFAULT_MOTIFS[:n_classes])
    elif len(motifs) != n_classes:
        raise ValueError(f"{len(motifs)} motifs given for n_classes={n_classes}")
    chosen = load_motifs(motifs)
    if len({m.matrix_id for m in chosen}) != len(chosen):
        raise ValueError("each class needs a different motif")
    if n_per_class < 1 or motifs_per_seq < 1:
        raise ValueError("n_per_class and motifs_per_seq must be at least 1")
    widest = max(m.width for m in chosen)
    if length < motifs_per_seq * widest:
        raise ValueError(f"length {length} cannot hold {motifs_per_seq} instances of a "
                         f"{widest} bp motif")
    rng = np.random.default_rng(seed)
    background = background_probabilities(background_gc)
    letters = np.frombuffer(ALPHABET.encode(), dtype=np.uint8)
    total = n_per_class * len(chosen)
    classes = np.repeat(np.arange(len(chosen)), n_per_class)[rng.permutation(total)]
    codes = rng.choice(4, size=(total, length), p=background)
    cumulative = [np.cumsum(m.probabilities(), axis=1) for m in chosen]
    for cum in cumulative:
        cum[:, -1] = 1.0  # guard against rounding: a uniform draw always lands in a base
    for i, c in enumerate(classes):
        width = chosen[c].width
        for start in _positions(rng, int(rng.integers(1, motifs_per_seq + 1)), width, length):
            site = (rng.random((width, 1)) < cumulative[c]).argmax(axis=1)  # sample each column
            if rng.random() < 0.5:
                site = 3 - site[::-1]  # reverse complement (A<->T, C<->G)
            codes[i, start:start + width] = site
    seqs = [row.tobytes().decode("ascii") for row in letters[codes]]
    ids = [f"synth_{i:06d}" for i in range(1, total + 1)]
    return ids, seqs, [chosen[c].name for c in classes]


def _positions(rng: np.random.Generator, k: int, width: int, length: int) -> list[int]:
    """``k`` random start positions of non-overlapping ``width``-bp sites in ``length`` bp
    (the free bases are cut into k + 1 gaps at k sorted uniform points)."""
    free = length - k * width
    cuts = np.sort(rng.integers(0, free + 1, size=k))
    return [int(cuts[j] + j * width) for j in range(k)]


def write_fasta_and_labels(fasta: str | Path, labels_tsv: str | Path, ids: Sequence[str],
                           seqs: Sequence[str], labels: Sequence[str],
                           force: bool = False) -> None:
    """Write ``ids``/``seqs`` as FASTA and an ``id<TAB>label`` TSV (header line), atomically.

    Raises :class:`InputError` if an output exists and ``force`` is False.
    """
    if not len(ids) == len(seqs) == len(labels):
        raise ValueError("ids, seqs and labels differ in length")
    check_output(fasta, force)
    check_output(labels_tsv, force)
    with atomic_output(fasta, force) as tmp:
        tmp.write_text("".join(f">{i}\n{s}\n" for i, s in zip(ids, seqs, strict=True)), encoding="utf-8")
    with atomic_output(labels_tsv, force) as tmp:
        tmp.write_text("id\tlabel\n" + "".join(f"{i}\t{lab}\n" for i, lab in zip(ids, labels, strict=True)),
                       encoding="utf-8")
