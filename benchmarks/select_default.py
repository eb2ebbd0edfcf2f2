"""Choose the ``default`` preset on training and validation data only (never the test split).

Trains candidate configurations on a class-stratified subsample of the DHS *training* split and
scores linear-probe / kNN accuracy on the *validation* split (chr2). Results are appended to
``benchmarks/results/selection.jsonl`` and summarised in ``benchmarks/results/selection.md``.

    python benchmarks/select_default.py [--n-train 3000] [--n-eval 2000] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from harness import prepare, run_method  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

# name -> (method, overrides). Each is one hypothesis from feasibility.md's untried levers.
CANDIDATES: dict[str, tuple[str, list[str]]] = {
    "random": ("random", []),
    "knn-kmer4-soft": ("knn-mixup", ["knn.space=kmer", "knn.kmer_k=4", "loss.name=soft"]),
    "knn-pca-soft": ("knn-mixup", ["knn.space=onehot-pca", "loss.name=soft"]),
    "knn-kmer4-infonce": ("knn-mixup", ["knn.space=kmer", "knn.kmer_k=4", "loss.name=infonce"]),
    "knn-kmer5-soft": ("knn-mixup", ["knn.space=kmer", "knn.kmer_k=5", "loss.name=soft"]),
    "handcrafted-soft": ("handcrafted", ["loss.name=soft"]),
    "handcrafted-infonce": ("handcrafted", ["loss.name=infonce"]),
    "diffaug-default": ("diffaug", []),
    "diffaug-infonce": ("diffaug", ["loss.name=infonce"]),
    "diffaug-s0.3": ("diffaug", ["bank.strength=0.3"]),
    "diffaug-s0.7": ("diffaug", ["bank.strength=0.7"]),
    "diffaug-s1.0": ("diffaug", ["bank.strength=1.0"]),
    "diffaug-g1": ("diffaug", ["bank.guidance_scale=1.0"]),
    "diffaug-discrete": ("diffaug", ["bank.discrete=true"]),
    "diffaug-frac1": ("diffaug", ["bank.fraction=1.0"]),
    # fourth session: the warm-up, the temperature, guidance, fresh positives
    "diffaug-nowarmup": ("diffaug", ["schedule.warmup_epochs=0"]),
    "diffaug-t0.5": ("diffaug", ["loss.temperature=0.5"]),
    "diffaug-g4": ("diffaug", ["bank.guidance_scale=4.0"]),
    "diffaug-m4": ("diffaug", ["bank.per_sequence=4"]),
    "diffaug-m4-both": ("diffaug", ["bank.per_sequence=4", "bank.both_views=true"]),
    # fifth session: the EMA restart and batch-norm recalibration (issue #10), then the strength
    # re-measured with them
    "diffaug-legacy": ("diffaug", ["generator.ema_warmup=false", "encoder.recalibrate_bn=false"]),
    "diffaug-s0.5": ("diffaug", ["bank.strength=0.5"]),
    "random-legacy-bn": ("random", ["encoder.recalibrate_bn=false"]),
    "knn-mixup": ("knn-mixup", []),
    "handcrafted": ("handcrafted", []),
    # sixth session (issue "beat PCA"): the k-mer-spectrum encoder (composition + position
    # profile, PCA-initialised projection) under every method
    "spectrum-random": ("random", ["encoder.backbone=spectrum"]),
    "spectrum-random-nopca": ("random", ["encoder.backbone=spectrum", "encoder.pca_init=false"]),
    "spectrum-knn": ("knn-mixup", ["encoder.backbone=spectrum"]),
    "spectrum-handcrafted": ("handcrafted", ["encoder.backbone=spectrum"]),
    "spectrum-diffaug": ("diffaug", ["encoder.backbone=spectrum"]),
    "spectrum-diffaug-nopca": ("diffaug", ["encoder.backbone=spectrum", "encoder.pca_init=false"]),
    "spectrum-diffaug-s0.5": ("diffaug", ["encoder.backbone=spectrum", "bank.strength=0.5"]),
    "spectrum-diffaug-s0.3": ("diffaug", ["encoder.backbone=spectrum", "bank.strength=0.3"]),
    "spectrum-diffaug-m4": ("diffaug", ["encoder.backbone=spectrum", "bank.per_sequence=4"]),
    "spectrum-diffaug-g0": ("diffaug", ["encoder.backbone=spectrum", "bank.guidance_scale=0.0"]),
    "spectrum-diffaug-g4": ("diffaug", ["encoder.backbone=spectrum", "bank.guidance_scale=4.0"]),
    "spectrum-diffaug-s1.0-g4": ("diffaug", ["encoder.backbone=spectrum", "bank.strength=1.0",
                                             "bank.guidance_scale=4.0"]),
    "spectrum-diffaug-gen750": ("diffaug", ["encoder.backbone=spectrum", "generator.steps=750",
                                            "generator.batch_size=256", "bank.steps=20"]),
    # eighth session (issue "never worse than the best training-free reference"): the
    # symmetric, block-PCA start under every method, and longer / shorter runs whose encoder
    # states (start, warm-up, round ends) measure the export criteria (export_states.py)
    "long-knn": ("knn-mixup", ["schedule.warmup_epochs=20", "schedule.epochs_per_round=40"]),
    "long-handcrafted": ("handcrafted", ["schedule.warmup_epochs=20",
                                         "schedule.epochs_per_round=40"]),
    "diffaug-nosym": ("diffaug", ["symmetry.mode=none"]),
    "handcrafted-nosym": ("handcrafted", ["symmetry.mode=none"]),
    "diffaug-r4": ("diffaug", ["schedule.rounds=4"]),
    "diffaug-r4-long": ("diffaug", ["schedule.rounds=4", "schedule.epochs_per_round=12"]),
    "diffaug-head1024": ("diffaug", ["encoder.proj_hidden=1024"]),
}


def _count(value: str) -> int | None:
    return None if value == "all" else int(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("dhs", "splice"), default="dhs",
                        help="splice: validation is a held-out quarter of its training split")
    parser.add_argument("--n-train", type=_count, default=3000, help="a number, or 'all'")
    parser.add_argument("--n-eval", type=_count, default=2000, help="a number, or 'all'")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=Path(".bench/selection"))
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--set", dest="common", action="append", default=[],
                        help="override applied to every candidate (budget); a candidate's own "
                             "keys win")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    split = prepare(args.dataset, args.workdir, args.n_train, args.n_eval, evaluate_on="validation")
    RESULTS.mkdir(exist_ok=True)
    for name, (method, overrides) in CANDIDATES.items():
        if args.only and name not in args.only:
            continue
        # the candidate's own keys win over the common budget
        res = run_method(split, method, args.seed, args.workdir, overrides=args.common + overrides)
        res["candidate"] = name
        res["dataset"] = args.dataset
        res["n_train"], res["n_eval"] = split.n_train, split.n_eval
        with open(RESULTS / "selection.jsonl", "a") as fh:
            fh.write(json.dumps(res) + "\n")
        print(f"{name:22s} linear {res['linear_accuracy']:.3f}  knn {res['knn_accuracy']:.3f}  "
              f"fit {res['fit_seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
