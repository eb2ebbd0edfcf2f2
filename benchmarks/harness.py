"""Shared pieces of the quality benchmarks: datasets as HDF5, one method run, probes.

A *method* is trained on the training sequences only (no labels); its encoder embeds the
training and the evaluation sequences; probes are fitted on the training embeddings with their
labels and scored on the evaluation set (a fixed split: by chromosome for DHS, 70/30 for splice).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffaug_genomics.config import (
    BankConfig,
    Config,
    GeneratorConfig,
    config_from_dict,
    load_yaml,
    resolve_config,
)
from diffaug_genomics.datasets import fetch
from diffaug_genomics.embed import embed
from diffaug_genomics.encode import encode_fasta
from diffaug_genomics.evaluate import evaluate_embeddings
from diffaug_genomics.fit import fit
from diffaug_genomics.io.h5 import load_rows, read_embeddings
from diffaug_genomics.kmers import baseline_features
from diffaug_genomics.modalities.registry import choose_modality

# name -> (labels of the splits in the fetched cache: training, evaluation)
SPLITS = {"dhs": ("train", "test", "validation"), "splice": ("train", "test", None)}

# The random encoder: no training at all (zero epochs), same architecture.
METHODS = {
    "random": ["schedule.warmup_epochs=0", "schedule.rounds=0"],
    "knn-mixup": [],
    "handcrafted": [],
    "diffaug": [],
    "evoaug": [],  # EvoAug 1.0.6's own augmentations (evoaug_baseline.py), when installed
}
# Methods whose fit is another method's with a different --augment / --backbone.
AUGMENT = {"random": "knn-mixup", "evoaug": "handcrafted"}
BACKBONE = {"evoaug": "evoaug_baseline:dna_evoaug"}


@dataclass
class Split:
    """One dataset prepared for a benchmark: HDF5 files with labels."""

    name: str
    train: Path
    evaluate: Path
    n_train: int
    n_eval: int


def _read_labelled(fasta: Path, labels_tsv: Path) -> tuple[list[tuple[str, str]], np.ndarray]:
    """The records ``(id, sequence)`` of a two-line-per-record FASTA and their labels."""
    lines = fasta.read_text().splitlines()
    recs = [(lines[i][1:].split()[0], lines[i + 1]) for i in range(0, len(lines), 2)]
    lab = dict(line.split("\t") for line in labels_tsv.read_text().splitlines()[1:])
    return recs, np.array([lab[r[0]] for r in recs])


def _write_labelled(recs: list[tuple[str, str]], y: np.ndarray, idx: np.ndarray, out_fa: Path,
                    out_tsv: Path) -> None:
    out_fa.write_text("".join(f">{recs[i][0]}\n{recs[i][1]}\n" for i in idx))
    out_tsv.write_text("id\tlabel\n" + "".join(f"{recs[i][0]}\t{y[i]}\n" for i in idx))


def _stratified(y: np.ndarray, take: Callable[[int], int], rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``take(class size)`` rows drawn from each class (classes in sorted
    order, without replacement)."""
    keep: list[int] = []
    for cls in sorted(set(y)):
        members = np.flatnonzero(y == cls)
        keep.extend(rng.choice(members, size=min(take(len(members)), len(members)),
                               replace=False))
    return np.sort(np.array(keep, dtype=np.int64))


def _subsample_fasta(fasta: Path, labels_tsv: Path, n: int | None, seed: int,
                     out_fa: Path, out_tsv: Path) -> int:
    """Class-stratified subsample of ``n`` records (all when ``n`` is None)."""
    recs, y = _read_labelled(fasta, labels_tsv)
    idx = np.arange(len(recs))
    if n is not None and n < len(recs):
        idx = _stratified(y, lambda m: round(n * m / len(recs)), np.random.default_rng(seed))
    _write_labelled(recs, y, idx, out_fa, out_tsv)
    return len(idx)


HOLDOUT_FRACTION = 0.25
"""Share of the training split held out as validation where a dataset has none (splice)."""


def _holdout(cache: Path, split: str, out: Path) -> dict[str, tuple[Path, Path]]:
    """Split ``split`` of the cache into a training part and a held-out validation part
    (:data:`HOLDOUT_FRACTION`, class-stratified, a fixed seed) in ``out``: the validation split
    of a dataset that ships none, drawn from its training split only."""
    parts = {"train": (out / "train_part.fa", out / "train_part_labels.tsv"),
             "validation": (out / "validation_part.fa", out / "validation_part_labels.tsv")}
    if all(fa.exists() and tsv.exists() for fa, tsv in parts.values()):
        return parts
    recs, y = _read_labelled(cache / f"{split}.fa", cache / f"{split}_labels.tsv")
    held = _stratified(y, lambda m: round(HOLDOUT_FRACTION * m), np.random.default_rng(0x5A11CE))
    is_held = np.zeros(len(recs), dtype=bool)
    is_held[held] = True
    for role, keep in (("train", ~is_held), ("validation", is_held)):
        _write_labelled(recs, y, np.flatnonzero(keep), *parts[role])
    return parts


def prepare(name: str, workdir: Path, n_train: int | None, n_eval: int | None,
            evaluate_on: str = "test", seed: int = 0) -> Split:
    """Fetch ``name`` (dhs | splice), subsample, and encode train/eval splits to HDF5.

    ``evaluate_on="validation"`` on a dataset without a validation split (splice) holds out
    :data:`HOLDOUT_FRACTION` of its training split and trains on the rest (:func:`_holdout`)."""
    cache = fetch(name)
    train_split, test_split, val_split = SPLITS[name]
    eval_split = {"test": test_split, "validation": val_split}[evaluate_on]
    out = workdir / f"{name}-{n_train}-{evaluate_on}-{n_eval}"
    out.mkdir(parents=True, exist_ok=True)
    sources = {role: (cache / f"{s}.fa", cache / f"{s}_labels.tsv")
               for role, s in (("train", train_split), ("eval", eval_split)) if s is not None}
    if eval_split is None:  # validation of a dataset that has none: part of its training split
        parts = _holdout(cache, train_split, out)
        sources = {"train": parts["train"], "eval": parts["validation"]}
    files = {}
    for role, n in (("train", n_train), ("eval", n_eval)):
        h5 = out / f"{role}.h5"
        if not h5.exists():
            fa, tsv = out / f"{role}.fa", out / f"{role}_labels.tsv"
            _subsample_fasta(*sources[role], n, seed, fa, tsv)
            encode_fasta(fa, h5, labels=tsv, policy="center", show_progress=False)
        files[role] = h5
    return Split(name, files["train"], files["eval"], len(load_rows(files["train"])[1]),
                 len(load_rows(files["eval"])[1]))


def probe(train_emb: np.ndarray, train_y: list[str], eval_emb: np.ndarray,
          eval_y: list[str], seed: int = 0, pca_dim: int | None = None) -> dict[str, float]:
    """Linear-probe and kNN accuracy (and macro-F1) on the evaluation set (after PCA-``pca_dim``
    fitted on the training features, when given: ``diffaug evaluate --pca``)."""
    report = evaluate_embeddings(train_emb, train_y, eval_emb, eval_y,
                                 protocols=("linear", "knn"), seed=seed, pca_dim=pca_dim)
    out = {}
    for proto in ("linear", "knn"):
        for metric in ("accuracy", "macro_f1"):
            out[f"{proto}_{metric}"] = report["protocols"][proto]["metrics"][metric]["mean"]
    out["chance"] = report["chance"]
    return out


def method_overrides(method: str, overrides: list[str] | None = None) -> list[str]:
    """The ``--set`` list a method trains with: the budget ``overrides``, then the method's own
    keys, which win (the random encoder stays untrained whatever epochs the budget gives)."""
    return [*(overrides or []), *METHODS[method]]


def method_run_dir(split: Split, method: str, seed: int, workdir: Path,
                   overrides: list[str] | None = None) -> Path:
    """Where :func:`run_method` trains: named by the prepared data (dataset, subsample sizes,
    evaluation split: the folder of ``split.train``), the method, the seed and the overrides."""
    tag = "_".join([method, f"s{seed}", *(o.replace("=", "-") for o in overrides or [])])
    return workdir / "runs" / split.train.parent.name / tag


def run_method(split: Split, method: str, seed: int, workdir: Path, preset: str = "default",
               overrides: list[str] | None = None) -> dict:
    """Train ``method`` on the split's training set, embed both sets, probe.

    Cached in :func:`method_run_dir`; a cached run whose saved configuration is not the one
    these arguments resolve to now (a preset or the precision changed since) is moved aside to
    ``<name>.stale-<its hash>`` and trained again.
    """
    run_dir = method_run_dir(split, method, seed, workdir, overrides)
    result_file = run_dir / "result.json"
    _set_aside_if_stale(run_dir, method_config_hash(split, method, seed, preset, overrides))
    if result_file.exists():
        return json.loads(result_file.read_text())
    t = time.perf_counter()
    fit(split.train, run_dir, preset=preset, seed=seed,  # resumes if interrupted
        augment=AUGMENT.get(method, method), backbone=BACKBONE.get(method),
        overrides=method_overrides(method, overrides), resume="auto")
    seconds = time.perf_counter() - t
    embs = {}
    for role, path in (("train", split.train), ("eval", split.evaluate)):
        out = run_dir / f"emb_{role}.h5"
        if not out.exists():
            embed(run_dir, path, out)
        emb, _, labels, _ = read_embeddings(out)
        embs[role] = (emb, labels)
    exported = load_yaml(run_dir / "config.yaml").get("exported") or {}
    result = {"dataset": split.name, "method": method, "seed": seed, "overrides": overrides or [],
              "fit_seconds": seconds, "exported_state": exported.get("state"),
              **probe(*embs["train"], *embs["eval"], seed=seed)}
    result_file.write_text(json.dumps(result, indent=1))
    return result


def method_config_hash(split: Split, method: str, seed: int, preset: str = "default",
                       overrides: list[str] | None = None) -> str:
    """The hash of what :func:`run_method` trains with (see :func:`_trained_hash`)."""
    modality, family, detect = choose_modality(split.train, None, BACKBONE.get(method))
    cfg = resolve_config(preset, None, method_overrides(method, overrides), seed=seed,
                         augment=AUGMENT.get(method, method), modality=modality,
                         default_modality=detect, preset_family=family)
    return _trained_hash(cfg)


def _trained_hash(cfg: Config) -> str:
    """``Config.hash`` of ``cfg`` with the generator and bank sections at their defaults
    unless the run uses them (``augment=diffaug``): a baseline's result does not change when
    only DiffAug's sampler settings in the preset do. The precision the run computes in on this
    machine is appended (``Config.hash`` leaves it out: a run may resume in another one, but a
    cached result is only the same result in the same precision)."""
    from diffaug_genomics.train.distributed import resolve_device
    from diffaug_genomics.train.precision import resolve_precision

    if cfg.augment != "diffaug":
        cfg = dataclasses.replace(cfg, generator=GeneratorConfig(), bank=BankConfig())
    return f"{cfg.hash()}-{resolve_precision(cfg.precision, resolve_device(cfg.device))}"


def _set_aside_if_stale(run_dir: Path, expected: str) -> None:
    """Rename ``run_dir`` to ``<name>.stale-<hash>`` if it holds another configuration."""
    saved = run_dir / "config.yaml"
    if not saved.exists():
        return
    found = _trained_hash(config_from_dict(load_yaml(saved)))
    if found != expected:
        aside = run_dir.with_name(f"{run_dir.name}.stale-{found}")
        print(f"{run_dir}: configuration {found} is not the current {expected} (a preset or "
              f"the precision changed?); moved to {aside.name}, training again", flush=True)
        run_dir.rename(aside)


def default_embed_dim() -> int:
    """Embedding size of the DNA ``default`` preset: the size of the same-size references."""
    return resolve_config("default").encoder.embed_dim


def same_size_references(split: Split, dim: int, seed: int = 0) -> list[dict]:
    """The label-free linear references of the embedding's own size ``dim``: PCA fitted on the
    training sequences only, probed like an embedding.

    - ``k-mer PCA-D``: k-mer frequencies reduced to ``D`` components, with K in 3..6 chosen on a
      stratified 25 % validation part of the *training* set (never the evaluation split);
    - ``canonical k-mer PCA-D``: the same with the canonical (strand-symmetrised) spectrum, the
      reference any bioinformatician computes;
    - ``one-hot PCA-D``: the flattened one-hot (position-aware), reduced to ``D``;
    - ``flattened one-hot``: the flattened one-hot itself (``4 L`` features).
    """
    from sklearn.model_selection import train_test_split

    t = time.perf_counter()
    rows, _, labels, _ = load_rows(split.train)
    eval_rows, _, eval_labels, _ = load_rows(split.evaluate)
    y = np.asarray(labels)
    fit_idx, val_idx = train_test_split(np.arange(len(y)), test_size=0.25, stratify=y,
                                        random_state=seed)
    chosen: dict[str, dict[int, float]] = {"kmer": {}, "ckmer": {}}
    for kind, scores in chosen.items():
        for k in (3, 4, 5, 6):
            feats = baseline_features(rows, kind, k)
            d = min(dim, feats.shape[1], len(fit_idx))
            scores[k] = probe(feats[fit_idx], y[fit_idx].tolist(), feats[val_idx],
                              y[val_idx].tolist(), seed, pca_dim=d)["linear_accuracy"]
    best = {kind: max(scores, key=scores.get) for kind, scores in chosen.items()}
    out = []
    for name, kind, k, pca in ((f"k-mer PCA-{dim}", "kmer", best["kmer"], dim),
                               (f"canonical k-mer PCA-{dim}", "ckmer", best["ckmer"], dim),
                               (f"one-hot PCA-{dim}", "onehot", 0, dim),
                               ("flattened one-hot", "onehot", 0, None)):
        a, b = baseline_features(rows, kind, k), baseline_features(eval_rows, kind, k)
        pca = None if pca is None else min(pca, a.shape[1], len(a))
        res = probe(a, labels, b, eval_labels, seed, pca_dim=pca)
        out.append({"dataset": split.name, "method": name, "seed": 0, "fit_seconds": 0.0,
                    "reference": True, "pca_dim": pca,
                    "features": kind if not k else f"{k}-mer" + (" canonical"
                                                                  if kind == "ckmer" else ""),
                    **({"validation_linear_by_k": chosen[kind]} if k else {}), **res})
    for r in out:
        r["feature_seconds"] = time.perf_counter() - t
    return out


def classical(split: Split, kind: str, k: int = 0) -> dict:
    """k-mer spectrum or GC content features with the same probes (no training)."""
    t = time.perf_counter()
    feats, labels = {}, {}
    for role, path in (("train", split.train), ("eval", split.evaluate)):
        rows, _, lab, _ = load_rows(path)
        feats[role], labels[role] = baseline_features(rows, kind, k), lab
    scores = probe(feats["train"], labels["train"], feats["eval"], labels["eval"])
    name = f"{k}-mer" if kind == "kmer" else kind
    return {"dataset": split.name, "method": name, "seed": 0, "fit_seconds": 0.0,
            "feature_seconds": time.perf_counter() - t, **scores}
