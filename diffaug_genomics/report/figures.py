"""The report's figures, drawn with matplotlib's Agg backend into PNG bytes.

Each function returns a :class:`Figure` (file name, PNG bytes, pixel size, caption); none of
them shows a window or touches matplotlib's global state beyond selecting Agg.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from diffaug_genomics.report.state import Metrics

DPI = 100
PHASE_COLOURS = {"warmup": "#7f7f7f", "encoder": "#1f77b4", "generator": "#d62728",
                 "bank": "#2ca02c", "init": "#9467bd"}


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


def save_png(fig: Any, name: str, alt: str) -> Figure:
    """A matplotlib figure as a :class:`Figure` named ``name`` with caption ``alt`` (PNG at
    :data:`DPI`, no software stamp, so the bytes depend only on the drawing); closes it."""
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
    return save_png(fig, "learning_curves.png", "learning curves: contrastive loss, generator "
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
    return save_png(fig, "diagnostics.png", "diagnostics: effective rank over encoder epochs, "
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
    return save_png(fig, "embedding_map.png", f"2-D map ({method}) of the embedding")
