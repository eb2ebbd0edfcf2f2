"""Any number of 200 bp sequences resampled from the bundled DHS example, from a seed.

Each sequence joins :data:`PIECES` pieces of ``200 / PIECES`` bp, each cut at a random offset
of a random one of the 500 bundled DHS sequences (``resources/examples/dhs_example.fa``), then
changes each base with probability :data:`MUTATION` to a random other base. The pieces keep the
real sequences' composition and short motifs; recombining and mutating them makes every row
distinct, so a neighbour search meets neither 500 clusters of copies nor i.i.d. noise. Used by
``bench_scale.py`` (10^4 to 10^6 rows) and by ``gpu_fit.py --n`` (the GPU check's 10^6-row fit).

    python benchmarks/scale_data.py 1000000 rows.h5     # or rows.fa
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

EXAMPLE = Path(__file__).resolve().parent.parent / "resources" / "examples" / "dhs_example.fa"
LENGTH = 200
PIECES = 4
MUTATION = 0.05
CHUNK_ROWS = 65_536
"""Rows generated (and written) at a time."""


def _sources() -> np.ndarray:
    """``(500, 200)`` base codes (0..3 = A, C, G, T) of the bundled example."""
    from diffaug_genomics.alphabet import one_hot

    seqs = [s.strip() for s in EXAMPLE.read_text().splitlines() if s and s[0] != ">"]
    return np.stack([one_hot(s[:LENGTH]).argmax(axis=1) for s in seqs]).astype(np.uint8)


def resampled_chunks(n: int, seed: int = 0) -> Iterator[np.ndarray]:
    """``n`` rows of base codes ``(m, 200) uint8``, :data:`CHUNK_ROWS` at a time (the same rows
    for a seed whatever is done with them)."""
    src = _sources()
    piece = LENGTH // PIECES
    rng = np.random.default_rng([seed, 0x5CA1E])
    for lo in range(0, n, CHUNK_ROWS):
        m = min(CHUNK_ROWS, n - lo)
        which = rng.integers(len(src), size=(m, PIECES))
        offset = rng.integers(LENGTH - piece + 1, size=(m, PIECES))
        cols = offset[:, :, None] + np.arange(piece)  # (m, PIECES, piece)
        bases = src[which[:, :, None], cols].reshape(m, PIECES * piece)
        mutate = rng.random((m, PIECES * piece)) < MUTATION
        shift = rng.integers(1, 4, size=(m, PIECES * piece), dtype=np.uint8)
        bases = np.where(mutate, (bases + shift) % 4, bases).astype(np.uint8)
        yield bases


def write_h5(path: Path, n: int, seed: int = 0) -> Path:
    """``n`` resampled rows as a one-hot HDF5 file (``diffaug encode``'s schema)."""
    from diffaug_genomics.io.onehot_writer import OneHotWriter

    eye = np.eye(4, dtype=np.uint8)
    with OneHotWriter(path, LENGTH, {"policy": "center", "source": "resampled"}) as w:
        start = 0
        for bases in resampled_chunks(n, seed):
            ids = [f"r{i}" for i in range(start, start + len(bases))]
            w.append(eye[bases], ids, np.full(len(bases), LENGTH, np.int32))
            start += len(bases)
    return path


def write_fasta(path: Path, n: int, seed: int = 0) -> Path:
    """``n`` resampled rows as FASTA (``>r{i}`` headers, one line per sequence)."""
    letters = np.frombuffer(b"ACGT", np.uint8)
    start = 0
    with open(path, "w") as fh:
        for bases in resampled_chunks(n, seed):
            text = letters[bases]
            fh.writelines(f">r{start + i}\n{row.tobytes().decode()}\n"
                          for i, row in enumerate(text))
            start += len(bases)
    return path


if __name__ == "__main__":
    count, out = int(sys.argv[1]), Path(sys.argv[2])
    (write_h5 if out.suffix in (".h5", ".hdf5") else write_fasta)(out, count)
    print(f"wrote {count} resampled sequences to {out}")
