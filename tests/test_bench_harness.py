"""The quality benchmark's run cache: a cached run is reused only while its configuration holds."""

from __future__ import annotations

import sys

import pytest
from conftest import REPO

from diffaug_genomics.config import config_from_dict, dump_yaml, load_yaml, resolve_config

sys.path.insert(0, str(REPO / "benchmarks"))
from harness import (  # noqa: E402
    AUGMENT,
    HOLDOUT_FRACTION,
    Split,
    _holdout,
    _set_aside_if_stale,
    _trained_hash,
    method_config_hash,
    method_overrides,
    method_run_dir,
)


@pytest.fixture
def split(example_fasta, tmp_path):
    return Split("dhs", example_fasta, example_fasta, 500, 500)


def saved_run(path, method, *overrides):
    """A run directory whose config.yaml is what ``fit`` saved for ``method`` + ``overrides``."""
    cfg = resolve_config("default", None, method_overrides(method, list(overrides)), seed=0,
                         augment=AUGMENT.get(method, method), modality="dna")
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(dump_yaml({**cfg.to_dict(), "world_size": 1}))
    (path / "result.json").write_text("{}")
    return path


@pytest.mark.parametrize("method, saved_with, stale", [
    ("diffaug", [], False),
    ("diffaug", ["bank.strength=0.3"], True),  # the preset's sampler setting changed
    ("diffaug", ["generator.steps=10"], True),
    ("handcrafted", ["bank.strength=0.3"], False),  # a baseline never uses the bank
    ("handcrafted", ["loss.temperature=0.5"], True),
    ("random", ["generator.steps=10"], False),
])
def test_a_cached_run_is_set_aside_only_when_what_it_trained_changed(split, tmp_path, method,
                                                                     saved_with, stale):
    run = saved_run(tmp_path / "dhs" / f"{method}_s0", method, *saved_with)
    found = config_from_dict(load_yaml(run / "config.yaml"))
    _set_aside_if_stale(run, method_config_hash(split, method, 0))
    aside = sorted(p.name for p in run.parent.iterdir() if ".stale-" in p.name)
    assert run.exists() is not stale
    assert len(aside) == int(stale)
    if stale:  # moved whole, named by the hash it was trained with
        assert (run.parent / aside[0] / "result.json").exists()
        assert aside[0] == f"{run.name}.stale-{_trained_hash(found)}"


def test_no_saved_config_means_nothing_to_compare(split, tmp_path):
    run = tmp_path / "fresh"
    _set_aside_if_stale(run, method_config_hash(split, "diffaug", 0))
    assert not run.exists() and list(tmp_path.iterdir()) == []


def test_the_random_encoder_stays_untrained_under_any_budget(split):
    """The budget's epochs must not turn the random baseline into a short kNN-mixup run."""
    budget = ["schedule.warmup_epochs=2", "schedule.epochs_per_round=4", "schedule.rounds=2"]
    cfg = resolve_config("default", None, method_overrides("random", budget), seed=0,
                         augment="knn-mixup", modality="dna")
    assert (cfg.schedule.warmup_epochs, cfg.schedule.rounds) == (0, 0)
    trained = resolve_config("default", None, budget, seed=0, augment="knn-mixup", modality="dna")
    assert _trained_hash(trained) != method_config_hash(split, "random", 0, overrides=budget)


def test_runs_on_differently_prepared_data_never_share_a_cache(tmp_path, example_fasta):
    """A 2,000- and an 8,000-sequence subsample of one dataset (same config) train apart."""
    small = Split("dhs", tmp_path / "dhs-2000-validation-2000" / "train.h5", example_fasta, 2000,
                  2000)
    large = Split("dhs", tmp_path / "dhs-8000-validation-2000" / "train.h5", example_fasta, 8000,
                  2000)
    dirs = {method_run_dir(s, "diffaug", 0, tmp_path, ["bank.steps=10"]) for s in (small, large)}
    assert len(dirs) == 2
    assert all(d.name == "diffaug_s0_bank.steps-10" for d in dirs)
    assert method_run_dir(small, "diffaug", 1, tmp_path) != method_run_dir(small, "diffaug", 0,
                                                                          tmp_path)


def test_holdout_validation_is_a_disjoint_stratified_part_of_the_training_split(
        example_fasta, example_labels, tmp_path):
    """splice has no validation split: a fixed quarter of its training split stands in."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "train.fa").write_text(example_fasta.read_text())
    (cache / "train_labels.tsv").write_text(example_labels.read_text())
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    parts = _holdout(cache, "train", tmp_path / "a")
    ids = {}
    labels = dict(line.split("\t") for line in example_labels.read_text().splitlines()[1:])
    for role, (fa, tsv) in parts.items():
        ids[role] = [line[1:] for line in fa.read_text().splitlines() if line.startswith(">")]
        assert [line.split("\t")[0] for line in tsv.read_text().splitlines()[1:]] == ids[role]
    assert not set(ids["train"]) & set(ids["validation"])
    assert len(ids["train"]) + len(ids["validation"]) == 500
    for cls in set(labels.values()):
        n_cls = sum(v == cls for v in labels.values())
        held = sum(labels[i] == cls for i in ids["validation"])
        assert held == round(HOLDOUT_FRACTION * n_cls)
    again = _holdout(cache, "train", tmp_path / "b")
    assert again["validation"][0].read_text() == parts["validation"][0].read_text()
