"""Quality benchmark: every method side by side on real DNA, 3 seeds, one report.

For DHS (4 cell types, 200 bp; train on a class-stratified subsample of the training split,
score on a subsample of the chr1 test split) and UCI splice junctions (60 bp, 70/30 split), it
trains the random-initialised encoder, ``--augment knn-mixup``, ``--augment handcrafted`` and
DiffAug with the ``default`` preset (same encoder, data and budget), EvoAug 1.0.6's own
augmentations when that package is installed (``evoaug_baseline.py``), adds the classical k-mer
spectrum (k = 3..6) and GC-content references, and writes:

- ``benchmarks/results/quality.md``: dataset x method, mean +/- sd over seeds of linear-probe and
  kNN accuracy, wall time; the generated positives' statistics; the exact command;
- ``benchmarks/results/quality.jsonl``: one JSON line per (dataset, method, seed);
- PNGs: accuracy by method, learning curves from ``metrics.csv``, a 2-D PCA map of embeddings.

    make bench-quality        # python benchmarks/bench_quality.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from evoaug_baseline import available as evoaug_available  # noqa: E402
from harness import (  # noqa: E402
    Split,
    classical,
    default_embed_dim,
    method_run_dir,
    prepare,
    run_method,
    same_size_references,
)

RESULTS = Path(__file__).resolve().parent / "results"
# EvoAug's own augmentations run as a second hand-designed baseline when the package installs.
METHODS = ("random", "knn-mixup", "handcrafted", "diffaug") + (("evoaug",) if evoaug_available()
                                                               else ())


def positive_stats(split: Split, run_dir: Path, n: int = 300, seed: int = 0) -> dict[str, float]:
    """Generated positives vs their sources: identity to source and to the nearest other
    training sequence, GC, and 3-mer spectrum L1 distance to real data vs to shuffled data."""
    from diffaug_genomics.alphabet import decode, one_hot
    from diffaug_genomics.diagnostics import dna_positive_stats
    from diffaug_genomics.generate import generate
    from diffaug_genomics.io.h5 import load_rows
    from diffaug_genomics.kmers import kmer_counts

    rows, ids, _, _ = load_rows(split.train)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(rows), size=min(n, len(rows)), replace=False))
    src_fa = run_dir / "positives_src.fa"
    src = decode(rows[pick])
    src_fa.write_text("".join(f">{ids[i]}\n{s}\n" for i, s in zip(pick, src, strict=True)))
    out = run_dir / "positives.fa"
    generate(run_dir, src_fa, out, per_sequence=1, seed=seed, force=True)
    gen = [line for line in out.read_text().splitlines() if line and line[0] != ">"]
    g_oh = np.stack([one_hot(s) for s in gen])
    s_oh = rows[pick]
    # identity to the source and to the nearest *other* training sequence: the definitions of
    # metrics.csv's pos_identity_source / pos_identity_nearest
    shared = dna_positive_stats(s_oh, g_oh, pick, rows)
    all_idx = rows.argmax(-1)
    shuffled = np.stack([r[rng.permutation(len(r))] for r in s_oh])
    spec = lambda x: kmer_counts(x, 3).mean(axis=0)  # noqa: E731
    real_other = rows[rng.choice(len(rows), size=len(pick), replace=False)]
    gc = lambda x: ((x[..., 1] + x[..., 2]).sum(1) / np.maximum(x.sum((1, 2)), 1))  # noqa: E731
    return {"identity_to_source": shared["pos_identity_source"],
            "identity_to_nearest_other": shared["pos_identity_nearest"],
            "source_identity_to_nearest_other": float(np.mean([
                max((all_idx[i] == all_idx[k]).mean() for k in rng.choice(len(rows), 200))
                for i in pick[:50]])),
            "gc_generated": float(gc(g_oh).mean()), "gc_source": float(gc(s_oh).mean()),
            "kmer3_l1_generated_vs_real": float(np.abs(spec(g_oh) - spec(real_other)).sum()),
            "kmer3_l1_shuffled_vs_real": float(np.abs(spec(shuffled) - spec(real_other)).sum()),
            "kmer3_l1_real_vs_real": float(np.abs(spec(s_oh) - spec(real_other)).sum())}


BASELINES = ("random", "knn-mixup", "handcrafted", "evoaug")
"""Learned baselines with DiffAug's encoder, data and encoder budget."""


REFERENCE_MARGIN = {"dhs": 1.0, "splice": 2.0}
"""Points the exported DiffAug embedding may lie below the best same-size reference (issue
"never worse than the best training-free reference": its Must)."""


def against_targets(table: dict, datasets: list[str]) -> list[str]:
    """Markdown: DiffAug against the targets, in linear-probe points (mean over seeds).

    Must: at or above the best same-size label-free reference minus :data:`REFERENCE_MARGIN`,
    and not below any learned baseline's mean by more than the seed spread. Moonshot: 2 points
    or more above every learned baseline and every same-size reference."""
    if not any((ds, "diffaug") in table for ds in datasets):
        return []
    lines = ["## Against the targets", "",
             "DiffAug minus each reference, linear-probe accuracy points (mean over seeds; "
             "'spread' is the larger of the two seed sds). Learned baselines use the same "
             "encoder, data and budget; the same-size references are label-free PCA of the raw "
             "sequence features reduced to the embedding's size.", "",
             "| dataset | reference | difference | spread | Must | met | Moonshot (>= +2) |",
             "|---|---|---|---|---|---|---|"]
    for ds in datasets:
        if (ds, "diffaug") not in table:
            continue
        mean, sd = table[(ds, "diffaug")]["linear"]
        for ref in [m for m in BASELINES if (ds, m) in table]:
            r_mean, r_sd = table[(ds, ref)]["linear"]
            diff, spread = 100 * (mean - r_mean), 100 * max(sd, r_sd)
            lines.append(f"| {ds} | {ref} | {diff:+.1f} | {spread:.1f} | >= -spread | "
                         f"{'yes' if diff >= -spread - 1e-9 else '**no**'} | "
                         f"{'yes' if diff >= 2 else 'no'} |")
        same_size = [m for (d, m) in table if d == ds and table[(d, m)].get("reference")
                     and table[(d, m)].get("pca_dim")]
        margin = REFERENCE_MARGIN.get(ds, 1.0)
        for ref in sorted(same_size, key=lambda m: -table[(ds, m)]["linear"][0]):
            diff = 100 * (mean - table[(ds, ref)]["linear"][0])
            lines.append(f"| {ds} | {ref} | {diff:+.1f} | - | >= -{margin:g} | "
                         f"{'yes' if diff >= -margin - 1e-9 else '**no**'} | "
                         f"{'yes' if diff >= 2 else 'no'} |")
    return lines + [""]


def summarise(rows: list[dict]) -> dict[tuple[str, str], dict]:
    out: dict[tuple[str, str], dict] = {}
    for r in rows:
        out.setdefault((r["dataset"], r["method"]), []).append(r)  # type: ignore[arg-type]
    table = {}
    for key, rs in out.items():  # type: ignore[assignment]
        lin = np.array([r["linear_accuracy"] for r in rs])
        knn = np.array([r["knn_accuracy"] for r in rs])
        table[key] = {"n": len(rs), "linear": (lin.mean(), lin.std(ddof=1) if len(rs) > 1 else 0.0),
                      "knn": (knn.mean(), knn.std(ddof=1) if len(rs) > 1 else 0.0),
                      "seconds": float(np.mean([r["fit_seconds"] for r in rs])),
                      "chance": rs[0]["chance"], "reference": bool(rs[0].get("reference")),
                      "pca_dim": rs[0].get("pca_dim")}
    return table


def save(fig, name: str) -> str:
    """Write a matplotlib figure to ``RESULTS/name`` and close it; returns ``name``."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(RESULTS / name, dpi=110)
    plt.close(fig)
    return name


def plots(table: dict, run_dirs: dict, splits: dict[str, Split]) -> list[str]:
    """Write the PNGs; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from diffaug_genomics.io.h5 import read_embeddings

    names = []
    datasets = sorted({d for d, _ in table})
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4), squeeze=False)
    for ax, ds in zip(axes[0], datasets, strict=True):
        methods = [m for d, m in table if d == ds]
        means = [table[(ds, m)]["linear"][0] for m in methods]
        sds = [table[(ds, m)]["linear"][1] for m in methods]
        ax.bar(range(len(methods)), means, yerr=sds, color="tab:blue", capsize=3)
        ax.axhline(table[(ds, methods[0])]["chance"], color="grey", ls="--", lw=1, label="chance")
        ax.set_xticks(range(len(methods)), methods, rotation=45, ha="right")
        ax.set_ylabel("linear-probe accuracy")
        ax.set_title(ds)
        ax.legend()
    names.append(save(fig, "quality_accuracy.png"))

    import csv

    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4), squeeze=False)
    for ax, ds in zip(axes[0], datasets, strict=True):
        for method in METHODS[1:]:  # every trained method (not the random encoder)
            run = run_dirs.get((ds, method))
            if run is None or not (run / "metrics.csv").exists():
                continue
            rows = [r for r in csv.DictReader(open(run / "metrics.csv"))
                    if r["phase"] in ("warmup", "encoder") and r["loss"]]
            ax.plot(range(len(rows)), [float(r["loss"]) for r in rows], label=method, lw=1)
        ax.set_xlabel("logged encoder step")
        ax.set_ylabel("contrastive loss")
        ax.set_title(f"{ds}: encoder learning curves (seed 0)")
        ax.legend()
    names.append(save(fig, "quality_learning_curves.png"))

    # the label-free diagnostic behind the probe: effective rank of the embedding by epoch
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4), squeeze=False)
    for ax, ds in zip(axes[0], datasets, strict=True):
        for method in METHODS[1:]:
            run = run_dirs.get((ds, method))
            if run is None or not (run / "metrics.csv").exists():
                continue
            rows = [r for r in csv.DictReader(open(run / "metrics.csv")) if r.get("eff_rank")]
            ax.plot([float(r["eff_rank"]) for r in rows], marker=".", label=method, lw=1)
        ax.axhline(default_embed_dim(), color="grey", ls="--", lw=1, label="embedding size")
        ax.set_xlabel("encoder epoch (0 = untrained)")
        ax.set_ylabel("effective rank of the embedding")
        ax.set_ylim(0, 1.05 * default_embed_dim())
        ax.set_title(f"{ds}: effective rank by encoder epoch (seed 0)")
        ax.legend()
    names.append(save(fig, "quality_effective_rank.png"))

    from sklearn.decomposition import PCA

    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 5), squeeze=False)
    for ax, ds in zip(axes[0], datasets, strict=True):
        run = run_dirs.get((ds, "diffaug"))
        if run is None:
            continue
        emb, _, labels, _ = read_embeddings(run / "emb_eval.h5")
        xy = PCA(2, random_state=0).fit_transform((emb - emb.mean(0)) / (emb.std(0) + 1e-8))
        for cls in sorted(set(labels)):
            m = np.array(labels) == cls
            ax.scatter(xy[m, 0], xy[m, 1], s=3, alpha=0.5, label=cls)
        ax.set_title(f"{ds}: DiffAug embeddings of the evaluation set (PCA)")
        ax.legend(markerscale=4)
    names.append(save(fig, "quality_embedding_map.png"))
    return names


def state_probes(split, run_dir: Path) -> list[dict]:
    """Probe every saved encoder state of a run (:func:`export_states.measure`)."""
    from export_states import measure

    from diffaug_genomics.io.h5 import load_rows

    train, _, ytr, _ = load_rows(split.train)
    evaluate, _, yev, _ = load_rows(split.evaluate)
    return measure(run_dir, (train, ytr), (evaluate, yev))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--dhs-seeds", type=int, nargs="+", default=None,
                        help="seeds for DHS when fewer than --seeds fit the time budget")
    parser.add_argument("--dhs-train", type=int, default=3000)
    parser.add_argument("--dhs-eval", type=int, default=2000)
    parser.add_argument("--workdir", type=Path, default=Path(".bench/quality"))
    parser.add_argument("--datasets", nargs="+", default=["splice", "dhs"])
    parser.add_argument("--set", dest="common", action="append", default=[],
                        help="override applied to every trained method (budget)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--note", default="",
                        help="a sentence about how the runs were made (machine load, parallel "
                             "invocations), added to the report")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS,
                        help="trained methods to run (default: all; the results file then "
                             "covers only these)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    RESULTS.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    splits = {}
    for ds in args.datasets:
        if ds == "dhs":
            splits["dhs"] = prepare("dhs", args.workdir, args.dhs_train, args.dhs_eval, "test")
        else:
            splits[ds] = prepare(ds, args.workdir, None, None, "test")
    rows: list[dict] = []
    run_dirs: dict = {}
    for ds, split in splits.items():
        print(f"{ds}: {split.n_train} training, {split.n_eval} evaluation sequences", flush=True)
        for kind, k in [("kmer", 3), ("kmer", 4), ("kmer", 5), ("kmer", 6), ("gc", 0)]:
            res = classical(split, kind, k)
            rows.append(res)
            print(f"  {res['method']:12s} linear {res['linear_accuracy']:.3f} knn {res['knn_accuracy']:.3f}",
                  flush=True)
        for res in same_size_references(split, default_embed_dim()):
            rows.append(res)
            print(f"  {res['method']:18s} ({res['features']}) linear "
                  f"{res['linear_accuracy']:.3f} knn {res['knn_accuracy']:.3f}", flush=True)
        seeds = args.dhs_seeds if ds == "dhs" and args.dhs_seeds else args.seeds
        for seed in seeds:
            for method in args.methods:
                res = run_method(split, method, seed, args.workdir, overrides=args.common)
                rows.append(res)
                if seed == seeds[0]:
                    run_dirs[(ds, method)] = method_run_dir(split, method, seed, args.workdir,
                                                            args.common)
                print(f"  {method:12s} seed {seed} linear {res['linear_accuracy']:.3f} "
                      f"knn {res['knn_accuracy']:.3f} ({res['fit_seconds']:.0f} s)", flush=True)
    with open(RESULTS / "quality.jsonl", "w") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    table = summarise(rows)
    stats = {ds: positive_stats(splits[ds], run_dirs[(ds, "diffaug")]) for ds in splits
             if (ds, "diffaug") in run_dirs}
    pngs = plots(table, run_dirs, splits)
    minutes = (time.perf_counter() - t0) / 60
    fit_minutes = sum(r["fit_seconds"] for r in rows) / 60
    argv = sys.argv[1:]
    if "--note" in argv:  # the note is in the text, not the command
        i = argv.index("--note")
        argv = argv[:i] + argv[i + 2:]
    cmd = "python benchmarks/bench_quality.py " + shlex.join(argv)
    lines = [
        "# Quality benchmark", "",
        f"Command: `{cmd.strip()}` (`make bench-quality`); {minutes:.0f} min on "
        f"{torch.get_num_threads()} CPU threads, torch {torch.__version__}, "
        f"Python {platform.python_version()}. Runs finished by an earlier invocation are "
        f"reused from `{args.workdir}`; the fit times below add up to {fit_minutes:.0f} min. "
        f"{args.note}", "",
        "Methods are trained without labels on the training sequences; linear probe (logistic "
        "regression on standardised embeddings) and kNN (k = 10, cosine) are fitted on the "
        "training embeddings and scored on the evaluation set. Mean +/- sd over seeds "
        f"{', '.join(map(str, args.seeds))} (DHS: {', '.join(map(str, args.dhs_seeds or args.seeds))}); "
        "classical references need no training (one value). The same-size references "
        f"(`k-mer PCA-{default_embed_dim()}`, `canonical k-mer PCA-{default_embed_dim()}`, "
        f"`one-hot PCA-{default_embed_dim()}`) are PCA of "
        "the raw sequence features fitted on the training sequences only, without labels, "
        "reduced to the `default` preset's embedding size (`diffaug evaluate --features ... "
        "--pca D`; the canonical spectrum is `--features ckmer:K`); the k-mer length is chosen "
        "on a 25 % validation part of the training set. Every trained method exports the "
        "encoder state its label-free criterion scores best (`fit --export best`, the default: "
        "the start or the end of a stage); the state each run exported is listed.", "",
    ]
    for ds, split in splits.items():
        sub = "subsampled, class-stratified" if ds == "dhs" else "all"
        where = "chr1 test split" if ds == "dhs" else "30 % stratified test split"
        lines += [f"## {ds}", "",
                  f"Training: {split.n_train} sequences ({sub}); evaluation: {split.n_eval} "
                  f"sequences from the {where}; chance (majority class) "
                  f"{next(v['chance'] for (d, _), v in table.items() if d == ds):.3f}.", "",
                  "| method | linear-probe accuracy | kNN accuracy | fit time (s) |",
                  "|---|---|---|---|"]
        for (d, m), v in table.items():
            if d != ds:
                continue
            lin = f"{v['linear'][0]:.3f} +/- {v['linear'][1]:.3f}" if v["n"] > 1 else f"{v['linear'][0]:.3f}"
            knn = f"{v['knn'][0]:.3f} +/- {v['knn'][1]:.3f}" if v["n"] > 1 else f"{v['knn'][0]:.3f}"
            lines.append(f"| {m} | {lin} | {knn} | {v['seconds']:.0f} |")
        for ref in [r for r in rows if r["dataset"] == ds and "validation_linear_by_k" in r]:
            by_k = ref["validation_linear_by_k"]
            lines += ["", f"`{ref['method']}` uses the {ref['features']} spectrum, chosen on "
                      "a 25 % validation part of the training set (validation linear probe "
                      + ", ".join(f"{k}-mer {v:.3f}" for k, v in by_k.items()) + ")."]
        exported = [r for r in rows if r["dataset"] == ds and r.get("exported_state")]
        if exported:
            lines += ["", "Exported states (`config.yaml` `exported`): " + "; ".join(
                f"{r['method']} seed {r['seed']}: {r['exported_state']}" for r in exported)
                + "."]
        if (ds, "diffaug") in run_dirs:
            from diffaug_genomics.train.export import CRITERIA

            lines += ["", "DiffAug seed 0, every encoder state it kept, probed on the "
                      "evaluation set (labels only here; the run chose among them without "
                      "labels, by `export.criterion`):", "",
                      "| state | linear | kNN | " + " | ".join(CRITERIA) + " |",
                      "|---|---|---|" + "---|" * len(CRITERIA)]
            for st in state_probes(splits[ds], run_dirs[(ds, "diffaug")]):
                lines.append(f"| {st['state']} | {st['linear_accuracy']:.3f} | "
                             f"{st['knn_accuracy']:.3f} | " + " | ".join(
                                 f"{st.get(c, float('nan')):.3f}" for c in CRITERIA) + " |")
        if ds in stats:
            lines += ["", "Generated positives (DiffAug seed 0, 300 training sequences, the run's "
                      "sampler settings):", ""]
            lines += [f"- {k}: {v:.3f}" for k, v in stats[ds].items()]
        lines.append("")
    lines += against_targets(table, list(splits))
    lines += ["## Plots", ""] + [f"![{p}]({p})" for p in pngs] + [""]
    (RESULTS / "quality.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
