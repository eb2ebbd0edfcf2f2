"""Which label-free criterion should choose the exported encoder state? Measured on runs.

For every run directory under ``<workdir>/runs/<split>/`` (trained by ``select_default.py``),
every saved encoder state (``checkpoints/start.pt``, ``warmup.pt``, ``round{r}.pt``) embeds the
split's training and validation rows and is probed (linear, kNN); its label-free criteria
(:data:`~diffaug_genomics.train.export.CRITERIA`) are computed as the run computes them, on the
run's diagnostic rows of the training set (:func:`~diffaug_genomics.train.export.criteria`). Labels are used only to score the
criteria, never by a run. Then, per dataset:

- the Spearman rank correlation of each criterion with the validation linear probe over every
  state of every run, and
- its *regret*: per run, the probe of the state the criterion would export minus the best
  state's probe, averaged over runs (0 = always the best state).

    python benchmarks/export_states.py --dataset dhs --n-train 2000 --workdir .bench/sel8
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from harness import prepare, probe  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from diffaug_genomics.config import config_from_dict, load_yaml  # noqa: E402
from diffaug_genomics.diagnostics import diagnostic_sample  # noqa: E402
from diffaug_genomics.io.h5 import load_rows  # noqa: E402
from diffaug_genomics.modalities.registry import get_modality  # noqa: E402
from diffaug_genomics.symmetry import discover  # noqa: E402
from diffaug_genomics.train import checkpoint as ckpt  # noqa: E402
from diffaug_genomics.train.export import CRITERIA, criteria, reference_features  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def states(run_dir: Path) -> list[tuple[str, Path]]:
    """``(label, checkpoint)`` of every saved encoder state, in training order."""
    found = [("start", run_dir / "checkpoints" / "start.pt"),
             ("warmup", run_dir / "checkpoints" / "warmup.pt")]
    rounds = sorted(run_dir.glob("checkpoints/round*.pt"),
                    key=lambda p: int(p.stem.removeprefix("round")))
    found += [(p.stem.replace("round", "round "), p) for p in rounds]
    return [(label, path) for label, path in found if path.exists()]


def embed_rows(encoder: torch.nn.Module, modality, rows: np.ndarray) -> np.ndarray:
    out = []
    with torch.no_grad():
        for start in range(0, len(rows), 1024):
            out.append(encoder(modality.to_model(rows[start:start + 1024])).float().numpy())
    return np.concatenate(out)


def measure(run_dir: Path, train: tuple, evaluate: tuple) -> list[dict]:
    saved = load_yaml(run_dir / "config.yaml")
    cfg = config_from_dict(saved)
    modality = get_modality(cfg.modality)
    diag = diagnostic_sample(len(train[0]), cfg.seed)
    group = discover(modality.symmetries, train[0], cfg.symmetry, cfg.seed).group
    references = None
    rows = []
    for label, path in states(run_dir):
        state = ckpt.load(path, ckpt.CHECKPOINT_FORMAT)
        shape = tuple(modality.to_model(train[0][:1]).shape[1:])
        encoder = modality.build_encoder(cfg, shape)
        encoder.load_state_dict(state["encoder"])
        encoder.eval()
        if references is None:  # the encoder's input statistics are the same in every state
            references = reference_features(modality, cfg, train[0][diag], group, encoder)
        a, b = embed_rows(encoder, modality, train[0]), embed_rows(encoder, modality, evaluate[0])
        values = criteria(torch.from_numpy(a[diag]), references)
        rows.append({"run": run_dir.name, "state": label, **probe(a, train[1], b, evaluate[1]),
                     **values})
    return rows


def summarise(rows: list[dict]) -> list[str]:
    lines = ["| criterion | Spearman with the linear probe (all states) | mean regret (points) "
             "| runs where it picks the best state |", "|---|---|---|---|"]
    by_run: dict[str, list[dict]] = {}
    for r in rows:
        by_run.setdefault(r["run"], []).append(r)
    for c in CRITERIA:
        usable = [r for r in rows if c in r]
        rho = spearmanr([r[c] for r in usable], [r["linear_accuracy"] for r in usable])[0]
        regrets, hits = [], 0
        for group in by_run.values():
            group = [r for r in group if c in r]
            if len(group) < 2:
                continue
            best = max(r["linear_accuracy"] for r in group)
            pick = max(group, key=lambda r: r[c])  # the earliest on a tie, as ExportChoice
            regrets.append(best - pick["linear_accuracy"])
            hits += pick["linear_accuracy"] == best
        lines.append(f"| {c} | {rho:+.2f} | {100 * np.mean(regrets):.1f} | {hits} of "
                     f"{len(regrets)} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("dhs", "splice"), default="dhs")
    parser.add_argument("--n-train", default="2000")
    parser.add_argument("--n-eval", default="2000")
    parser.add_argument("--workdir", type=Path, default=Path(".bench/selection"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    count = {"all": None}
    split = prepare(args.dataset, args.workdir, count.get(args.n_train, None if
                    args.n_train == "all" else int(args.n_train)),
                    None if args.n_eval == "all" else int(args.n_eval), evaluate_on="validation")
    tr, _, ytr, _ = load_rows(split.train)
    ev, _, yev, _ = load_rows(split.evaluate)
    runs = sorted(p for p in (args.workdir / "runs" / split.train.parent.name).iterdir()
                  if (p / "encoder.pt").exists() and (p / "checkpoints" / "start.pt").exists())
    rows = []
    for run_dir in runs:
        found = measure(run_dir, (tr, ytr), (ev, yev))
        for r in found:
            print(f"{r['run']:60s} {r['state']:8s} linear {r['linear_accuracy']:.3f} "
                  + " ".join(f"{c} {r.get(c, float('nan')):.4f}" for c in CRITERIA), flush=True)
        rows += found
    out = RESULTS / "export_states.jsonl"
    with open(out, "a") as fh:
        for r in rows:
            fh.write(json.dumps({"dataset": args.dataset, "n_train": split.n_train, **r}) + "\n")
    print("\n".join(summarise(rows)))


if __name__ == "__main__":
    main()
