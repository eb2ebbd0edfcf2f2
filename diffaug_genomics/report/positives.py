"""The report's figures of generated positives, one kind per modality: DNA (identity, GC and
3-mer spectra of the positives, source / positive pairs marked up), images (a grid of sources
and their positives) and tables (feature distributions of real rows and positives). Drawn like
:mod:`diffaug_genomics.report.figures` (Agg backend, PNG bytes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from diffaug_genomics.alphabet import ALPHABET as BASES
from diffaug_genomics.report.figures import Figure, pyplot, save_png


@dataclass
class DnaPositives:
    """Per positive: identity to its source, GC of positive and source; mean 3-mer spectra."""

    identity: np.ndarray
    gc_pos: np.ndarray
    gc_src: np.ndarray
    kmer_pos: np.ndarray
    kmer_real: np.ndarray
    src_bases: np.ndarray
    pos_bases: np.ndarray
    called: np.ndarray


def dna_positives(rows: np.ndarray, bank: np.ndarray) -> DnaPositives:
    """``rows (n, L, 4) uint8`` sources, ``bank (n, K, 4, L)`` positives (model layout)."""
    from diffaug_genomics.diagnostics import identity_to_source
    from diffaug_genomics.kmers import kmer_counts

    n, k = bank.shape[:2]
    called = rows.sum(-1) > 0  # (n, L)
    src = rows.argmax(-1)  # (n, L)
    pos = bank.argmax(2)  # (n, K, L)
    called_k = np.repeat(called[:, None], k, axis=1)
    identity = identity_to_source(rows, pos)  # (n, K), as metrics.csv's pos_identity_source
    gc = lambda b, c: (np.isin(b, (1, 2)) & c).sum(-1) / np.maximum(c.sum(-1), 1)  # noqa: E731
    gc_pos = gc(pos, called_k)
    gc_src = np.repeat(gc(src, called)[:, None], k, axis=1)
    onehot = (np.eye(4, dtype=np.uint8)[pos] * called_k[..., None]).reshape(n * k, -1, 4)
    kmer_pos = kmer_counts(onehot, 3).mean(axis=0)
    kmer_real = kmer_counts(rows, 3).mean(axis=0)
    return DnaPositives(identity.ravel(), gc_pos.ravel(), gc_src.ravel(), kmer_pos, kmer_real,
                        src, pos, called)


def dna_positives_figure(p: DnaPositives, round_: int) -> Figure:
    from diffaug_genomics.kmers import kmer_names

    plt = pyplot()
    fig = plt.figure(figsize=(14, 8), constrained_layout=True)
    grid = fig.add_gridspec(2, 2)
    ax = fig.add_subplot(grid[0, 0])
    ax.hist(p.identity, bins=np.linspace(0, 1, 41), color="#1f77b4")
    ax.axvline(0.25, color="#999999", ls=":", lw=1)
    ax.text(0.25, 0.98, " random (0.25)", transform=ax.get_xaxis_transform(), va="top",
            fontsize=8, color="#666666")
    ax.set_xlabel("fraction of bases equal to the source")
    ax.set_ylabel("positives")
    ax.set_title(f"identity of positives to their source (bank of round {round_})")
    ax = fig.add_subplot(grid[0, 1])
    ax.scatter(p.gc_src, p.gc_pos, s=5, alpha=0.5)
    lo = float(min(p.gc_src.min(), p.gc_pos.min(), 0.2))
    hi = float(max(p.gc_src.max(), p.gc_pos.max(), 0.8))
    ax.plot([lo, hi], [lo, hi], color="black", lw=0.8)
    ax.set_xlabel("GC of the source")
    ax.set_ylabel("GC of the positive")
    r = np.corrcoef(p.gc_src, p.gc_pos)[0, 1] if len(p.gc_src) > 2 else float("nan")
    ax.set_title(f"GC of positive against GC of source (r = {r:.2f})")
    ax = fig.add_subplot(grid[1, :])
    x = np.arange(len(p.kmer_real))
    ax.bar(x - 0.2, p.kmer_real, width=0.4, label="real sequences", color="#7f7f7f")
    ax.bar(x + 0.2, p.kmer_pos, width=0.4, label="generated positives", color="#d62728")
    ax.set_xticks(x, kmer_names(3), rotation=90, fontsize=7, family="monospace")
    ax.set_xlim(-1, len(x))
    ax.set_ylabel("mean frequency")
    l1 = float(np.abs(p.kmer_real - p.kmer_pos).sum())
    ax.set_title(f"3-mer spectrum: positives against the real data (L1 = {l1:.3f} of 2)")
    ax.legend(fontsize=8)
    return save_png(fig, "positives.png", "generated positives: identity to source, GC, 3-mer "
                 "spectrum")


def image_grid(sources: np.ndarray, positives: np.ndarray, round_: int, n: int = 8) -> Figure:
    """``sources (n, C, H, W)``, ``positives (n, K, C, H, W)``, model layout in [-1, 1]: one
    column per source, the source on top and its positives below it."""
    plt = pyplot()
    n = min(n, len(sources))
    k = min(positives.shape[1], 3)
    fig, axes = plt.subplots(1 + k, n, figsize=(1.3 * n + 0.8, 1.3 * (1 + k) + 0.6),
                             squeeze=False, constrained_layout=True)

    def show(ax: Any, image: np.ndarray) -> None:
        image = np.clip((np.moveaxis(image, 0, -1) + 1) / 2, 0, 1)
        ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])

    for i in range(n):
        show(axes[0, i], sources[i])
        for j in range(k):
            show(axes[1 + j, i], positives[i, j])
    axes[0, 0].set_ylabel("source", fontsize=9)
    for j in range(k):
        axes[1 + j, 0].set_ylabel(f"positive {j + 1}", fontsize=9)
    fig.suptitle(f"sources (top) and their generated positives (bank of round {round_})",
                 fontsize=10)
    return save_png(fig, "positives.png", "a grid of source images above their positives")


def table_features(real: np.ndarray, positives: np.ndarray, round_: int,
                   names: list[str] | None = None, n_features: int = 6) -> Figure:
    """Per-feature histograms of positives against real rows for the most variable features
    (``real (n, D)``, ``positives (n, K, D)``, preprocessed units)."""
    plt = pyplot()
    pos = positives.reshape(-1, real.shape[1])
    order = np.argsort(-real.var(axis=0))[:n_features]
    cols = 3
    rows = math.ceil(len(order) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(13, 3.2 * rows), squeeze=False,
                             constrained_layout=True)
    for ax in axes.ravel()[len(order):]:
        ax.axis("off")
    for ax, j in zip(axes.ravel(), order, strict=False):
        lo = float(min(real[:, j].min(), pos[:, j].min()))
        hi = float(max(real[:, j].max(), pos[:, j].max()))
        bins = np.linspace(lo, hi if hi > lo else lo + 1, 31)
        ax.hist(real[:, j], bins=bins, alpha=0.6, density=True, label="real rows",
                color="#7f7f7f")
        ax.hist(pos[:, j], bins=bins, alpha=0.6, density=True, label="positives",
                color="#d62728")
        ax.set_title(names[j] if names and j < len(names) else f"feature {j}", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(f"most variable features: positives against real rows (bank of round "
                 f"{round_}, preprocessed units)", fontsize=10)
    return save_png(fig, "positives.png", "per-feature distributions of positives and real rows")


def pair_markup(src: np.ndarray, pos: np.ndarray, called: np.ndarray, width: int = 100) -> str:
    """A source and its positive as aligned blocks of ``width`` bases (HTML for a ``<pre>``),
    the positions where they differ in ``<b>``. Positions the source does not call are
    padding (``.``) when they lie before its first or after its last called base, N inside:
    padding is not sequence, and the positive's bases there are not shown."""
    def cell(base: str, differs: bool) -> str:
        return f"<b>{base}</b>" if differs else base

    where = np.flatnonzero(called)
    first, last = (int(where[0]), int(where[-1])) if len(where) else (len(src), -1)
    lines = []
    for start in range(0, len(src), width):
        stop = min(start + width, len(src))
        s_line, p_line = [], []
        for i in range(start, stop):
            a, b, c = src[i], pos[i], called[i]
            differs = bool(c) and a != b
            blank = "." if i < first or i > last else "N"
            s_line.append(cell(BASES[a] if c else blank, differs))
            p_line.append(cell(BASES[b] if c else blank, differs))
        lines.append(f"source   {start + 1:>5} {''.join(s_line)}")
        lines.append(f"positive {start + 1:>5} {''.join(p_line)}\n")
    return "\n".join(lines).rstrip("\n")
