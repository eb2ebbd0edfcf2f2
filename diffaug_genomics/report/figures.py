"""The report's figures, drawn with matplotlib's Agg backend into PNG bytes.

Each function returns a :class:`Figure` (file name, PNG bytes, pixel size, caption); none of
them shows a window or touches matplotlib's global state beyond selecting Agg.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from diffaug_genomics.report.state import Metrics

DPI = 100
PHASE_COLOURS = {"warmup": "#7f7f7f", "encoder": "#1f77b4", "generator": "#d62728",
                 "bank": "#2ca02c", "init": "#9467bd"}
BASES = "ACGT"


@dataclass
class Figure:
    name: str
    """File name in the report's PNG folder, e.g. ``learning_curves.png``."""
    png: bytes
    width: int
    height: int
    alt: str


def pyplot():  # noqa: ANN201 - the matplotlib.pyplot module
    """``matplotlib.pyplot`` on the Agg backend (ImportError when matplotlib is missing)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, name: str, alt: str) -> Figure:
    plt = pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    width, height = (int(round(v)) for v in fig.get_size_inches() * DPI)
    plt.close(fig)
    return Figure(name, buf.getvalue(), width, height, alt)


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=10, color="#555555",
            transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _round_lines(ax: Any, m: Metrics) -> None:
    """Dashed vertical lines where a new round of encoder training starts (x = encoder step)."""
    enc = m.steps("warmup", "encoder")
    rounds = enc["round"]
    steps = enc["step"]
    for r in np.unique(rounds):
        if r < 1:
            continue
        first = steps[rounds == r].min()
        ax.axvline(first, color="#999999", ls="--", lw=0.8)
        ax.text(first, 1.0, f" round {int(r)}", transform=ax.get_xaxis_transform(), va="top",
                fontsize=8, color="#666666")


# ---------------------------------------------------------------------------- learning curves


def learning_curves(m: Metrics, augment: str = "diffaug") -> Figure:
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), constrained_layout=True)
    ax = axes[0, 0]
    enc = m.steps("warmup", "encoder")
    if len(enc):
        for (phase, rnd) in sorted({(str(p), int(r)) for p, r in zip(enc.phase, enc["round"],
                                                                        strict=True)},
                                   key=lambda k: k[1]):
            sel = (enc.phase == phase) & (enc["round"] == rnd)
            label = ("warm-up (kNN-mixup)" if phase == "warmup" else
                     f"encoder, round {rnd}" if augment == "diffaug" else f"encoder ({augment})")
            ax.plot(enc["step"][sel], enc["loss"][sel], ".-", ms=3, lw=1, label=label,
                    color=PHASE_COLOURS[phase] if phase == "warmup" else None)
        _round_lines(ax, m)
        ax.legend(fontsize=8)
        ax.set_xlabel("encoder step")
        ax.set_ylabel("contrastive loss")
    else:
        _empty(ax, "no encoder steps logged yet")
    ax.set_title("contrastive loss by phase and round")

    ax = axes[0, 1]
    gen = m.steps("generator")
    if len(gen):
        for rnd in np.unique(gen["round"]):
            sel = gen["round"] == rnd
            ax.plot(gen["step"][sel], gen["loss"][sel], ".-", ms=3, lw=1,
                    label=f"round {int(rnd)}")
        ax.legend(fontsize=8)
        ax.set_xlabel("generator step")
        ax.set_ylabel("denoising loss")
    else:
        _empty(ax, "no generator steps yet" if augment == "diffaug" else
               f"no generator in this run (--augment {augment})")
    ax.set_title("generator loss")

    ax = axes[1, 0]
    if len(enc):
        ax.plot(enc["step"], enc["lr"], "-", lw=1.2, color=PHASE_COLOURS["encoder"])
        _round_lines(ax, m)
        ax.set_xlabel("encoder step")
        ax.set_ylabel("learning rate")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    else:
        _empty(ax, "no encoder steps logged yet")
    ax.set_title("encoder learning rate")

    ax = axes[1, 1]
    rates = [(p, m.steps(p)["samples_per_s"]) for p in ("warmup", "encoder", "generator")]
    bank = m.rows(m.phase == "bank")
    rates.append(("bank", bank["samples_per_s"]))
    rates = [(p, v[~np.isnan(v)]) for p, v in rates]
    rates = [(p, v) for p, v in rates if len(v)]
    if rates:
        ax.boxplot([v for _, v in rates])  # tick labels set apart: matplotlib 3.7 to 3.11
        ax.set_xticks(np.arange(1, len(rates) + 1), [
            {"bank": "bank refresh\n(positives/s)"}.get(p, p) for p, _ in rates])
        ax.set_ylabel("samples / s")
    else:
        _empty(ax, "no throughput logged")
    ax.set_title("throughput by phase")
    return _save(fig, "learning_curves.png", "learning curves: contrastive loss, generator "
                 "loss, learning rate and samples per second")


# -------------------------------------------------------------------------------- diagnostics


def _unit_labels(d: Metrics) -> list[str]:
    out = []
    for p, r, e in zip(d.phase, d["round"], d["epoch"], strict=True):
        if p == "init":
            out.append("init")
        elif p == "warmup":
            out.append(f"w{int(e)}")
        else:
            out.append(f"r{int(r)}.{int(e)}")
    return out


def _placeholder(ax: Any, m: Metrics, has_generator: bool, n_rows: int, no_generator: str,
                 not_yet: str) -> bool:
    """Write why a generator panel is empty, if it is; True when it is."""
    why = (no_generator if not has_generator else "not recorded" if not m.diagnostics
           else not_yet if n_rows == 0 else None)
    if why is not None:
        _empty(ax, why)
    return why is not None


def diagnostics(m: Metrics, embed_dim: int, has_generator: bool) -> Figure:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), constrained_layout=True)
    ax = axes[0]
    d = m.diagnostic_rows("init", "warmup", "encoder")
    d = d.rows(~np.isnan(d["eff_rank"]))
    if not m.diagnostics:
        _empty(ax, "not recorded\n(metrics.csv predates the diagnostics columns)")
    elif len(d):
        x = np.arange(len(d))
        ax.plot(x, d["eff_rank"], "o-", label="embedding", color=PHASE_COLOURS["encoder"])
        if not np.isnan(d["eff_rank_pooled"]).all():
            ax.plot(x, d["eff_rank_pooled"], "s--", ms=4, label="pooled features",
                    color="#ff7f0e")
        ax.axhline(embed_dim, color="black", lw=1, label=f"embedding size ({embed_dim})")
        ax.axhline(0.1 * embed_dim, color="#d62728", lw=0.8, ls=":", label="10 % (collapse)")
        ax.set_xticks(x, _unit_labels(d), rotation=45, fontsize=7)
        top = max(embed_dim, float(np.nanmax(d["eff_rank"])),
                  float(np.nanmax(np.append(d["eff_rank_pooled"], 0.0))))
        ax.set_ylim(0, top * 1.08)
        ax.set_xlabel("end of encoder epoch")
        ax.set_ylabel("effective rank")
        ax.legend(fontsize=7, loc="best")
    else:
        _empty(ax, "no encoder epoch finished yet")
    ax.set_title("effective rank of the embedding")

    ax = axes[1]
    g = m.diagnostic_rows("generator")
    g = g.rows(~np.isnan(g["cond_gain"]))
    if not _placeholder(ax, m, has_generator, len(g), "no generator in this run",
                        "no generator unit finished yet"):
        x = np.arange(len(g))
        ax.plot(x, g["cond_gain"], "o-", color=PHASE_COLOURS["generator"])
        ax.axhline(0, color="black", lw=0.8)
        ax.axhspan(min(0.0, float(np.nanmin(g["cond_gain"]))), 0.01, color="#d62728",
                   alpha=0.08, label="ignored (< 1 %)")
        ax.set_ylim(min(0.0, float(np.nanmin(g["cond_gain"]))) - 0.005,
                    max(0.05, 1.2 * float(np.nanmax(g["cond_gain"]))))
        ax.legend(fontsize=7, loc="upper left")
        ax.set_xticks(x, [f"r{int(r)}.{int(e)}" for r, e in zip(g["round"], g["epoch"],
                                                                  strict=True)],
                      rotation=45, fontsize=7)
        ax.set_xlabel("end of generator unit (round.unit)")
        ax.set_ylabel("relative loss increase")
    ax.set_title("condition use (cond_gain; 0 = ignored)")

    ax = axes[2]
    b = m.rows(m.phase == "bank")
    b = b.rows(~np.isnan(b["pos_identity_source"]))
    if not _placeholder(ax, m, has_generator, len(b), "no generated positives in this run",
                        "no bank refresh yet"):
        x = b["round"]
        ax.plot(x, b["pos_identity_source"], "o-", label="identity to source")
        ax.plot(x, b["pos_identity_nearest"], "s-", label="identity to nearest other row")
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("identity")
        ax2 = ax.twinx()
        ax2.plot(x, b["pos_kmer3_l1"], "^--", color="#2ca02c", label="3-mer L1 to source")
        ax2.set_ylim(0, 2)
        ax2.set_ylabel("3-mer L1 distance (0..2)")
        ax.set_xticks(x, [f"round {int(r)}" for r in x])
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="lower left")
    ax.set_title("positives at each bank refresh")
    return _save(fig, "diagnostics.png", "diagnostics: effective rank over encoder epochs, "
                 "condition use of the generator, identity of the positives")


# ------------------------------------------------------------------------------ embedding map


def project(emb: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """2-D coordinates of the embeddings (PCA, or t-SNE from scikit-learn)."""
    x = np.asarray(emb, dtype=np.float64)
    x = x - x.mean(axis=0)
    if method == "tsne" and len(x) > 5:
        from sklearn.manifold import TSNE

        return TSNE(n_components=2, perplexity=min(30.0, (len(x) - 1) / 3), init="pca",
                    random_state=seed).fit_transform(x)
    from sklearn.decomposition import PCA

    k = min(2, x.shape[1], len(x))
    out = PCA(n_components=k, random_state=seed).fit_transform(x)
    return np.pad(out, ((0, 0), (0, 2 - k)))


def embedding_map(coords: np.ndarray, method: str, labels: list[str] | None,
                  clusters: np.ndarray | None, gc: np.ndarray | None) -> Figure:
    plt = pyplot()
    panels = 1 + (gc is not None)
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 5.5), constrained_layout=True,
                             squeeze=False)
    ax = axes[0, 0]
    axis = "PC" if method == "pca" else "t-SNE "
    if labels is not None:
        names = sorted(set(labels))
        lab = np.asarray(labels)
        cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
        for i, name in enumerate(names[:20]):
            sel = lab == name
            ax.scatter(coords[sel, 0], coords[sel, 1], s=6, alpha=0.7, color=cmap(i % cmap.N),
                       label=f"{name} ({int(sel.sum())})")
        ax.legend(fontsize=7, markerscale=2, loc="best")
        ax.set_title(f"embedding map ({method.upper()}), coloured by label")
    else:
        sc = ax.scatter(coords[:, 0], coords[:, 1], s=6, alpha=0.7, c=clusters, cmap="tab10")
        k = len(np.unique(clusters)) if clusters is not None else 0
        ax.legend(*sc.legend_elements(), fontsize=7, title="k-means", loc="best")
        ax.set_title(f"embedding map ({method.upper()}), coloured by k-means cluster (k = {k})")
    ax.set_xlabel(f"{axis}1")
    ax.set_ylabel(f"{axis}2")
    if gc is not None:
        ax = axes[0, 1]
        sc = ax.scatter(coords[:, 0], coords[:, 1], s=6, alpha=0.8, c=gc, cmap="viridis")
        fig.colorbar(sc, ax=ax, label="GC fraction")
        ax.set_title("coloured by GC content")
        ax.set_xlabel(f"{axis}1")
        ax.set_ylabel(f"{axis}2")
    return _save(fig, "embedding_map.png", f"2-D map ({method}) of the embedding")


# ---------------------------------------------------------------------------------- positives


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
    return _save(fig, "positives.png", "generated positives: identity to source, GC, 3-mer "
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
    return _save(fig, "positives.png", "a grid of source images above their positives")


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
    return _save(fig, "positives.png", "per-feature distributions of positives and real rows")


def pair_markup(src: np.ndarray, pos: np.ndarray, called: np.ndarray, width: int = 100) -> str:
    """A source and its positive as aligned blocks of ``width`` bases (HTML for a ``<pre>``),
    the positions where they differ in ``<b>``; positions the source does not call are N."""
    def cell(base: str, differs: bool) -> str:
        return f"<b>{base}</b>" if differs else base

    lines = []
    for start in range(0, len(src), width):
        stop = min(start + width, len(src))
        s_line, p_line = [], []
        for a, b, c in zip(src[start:stop], pos[start:stop], called[start:stop], strict=True):
            differs = bool(c) and a != b
            s_line.append(cell(BASES[a] if c else "N", differs))
            p_line.append(cell(BASES[b] if c else "N", differs))
        lines.append(f"source   {start + 1:>5} {''.join(s_line)}")
        lines.append(f"positive {start + 1:>5} {''.join(p_line)}\n")
    return "\n".join(lines).rstrip("\n")
