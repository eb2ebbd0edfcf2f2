"""``precision: auto`` by measurement and ``batch_scaling`` (train/autotune): the decision, its
record in config.yaml, the per-machine cache, and resume keeping both decisions."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
import torch
import yaml
from conftest import MICRO
from test_train import assert_same, crash_at, final_state, make_trainer

from diffaug_genomics.config import resolve_config
from diffaug_genomics.fit import Preempted, fit
from diffaug_genomics.modalities.registry import get_modality
from diffaug_genomics.train import autotune, loop
from diffaug_genomics.train.autotune import choose_precision, scale_batches
from diffaug_genomics.train.loop import StopRequested
from diffaug_genomics.train.precision import native_bf16

CPU = torch.device("cpu")
DNA = get_modality("dna")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    path = tmp_path / "tuning.json"
    monkeypatch.setenv("DIFFAUG_TUNING_CACHE", str(path))
    return path


def _figures(fp32: dict, bf16: dict):
    def measure(cfg, modality, rows, device, counts):
        return {"fp32": {k: fp32[k] for k in counts}, "bf16": {k: bf16[k] for k in counts}}
    return measure


@pytest.mark.skipif(not native_bf16(CPU), reason="bf16 is measured only where it is native")
def test_auto_chooses_the_candidate_with_the_shorter_estimated_fit(example_rows, cache,
                                                                    monkeypatch):
    cfg = resolve_config("tiny", overrides=MICRO)
    # 3 epochs of 128 // 32 steps; 2 rounds of 6 generator steps; 2 refreshes of 2 batches of
    # 64 with 2 sampler evaluations (3 DDIM steps at SDEdit strength 0.5)
    assert autotune._phase_counts(cfg, len(example_rows), 1) == {
        "encoder": 12.0, "generator": 12.0, "bank": 8.0}
    # bf16 faster per step everywhere: bf16
    monkeypatch.setattr(autotune, "_measure", _figures({"encoder": 2.0, "generator": 2.0,
                                                        "bank": 2.0},
                                                       {"encoder": 1.0, "generator": 1.0,
                                                        "bank": 1.0}))
    precision, decision = choose_precision(cfg, DNA, example_rows, CPU)
    assert precision == "bf16" and "measured in" in decision["reason"]
    assert decision["estimate_s"]["bf16"] < decision["estimate_s"]["fp32"]
    # the figures are kept: the next run decides from them without measuring
    monkeypatch.setattr(autotune, "_measure", lambda *a: pytest.fail("measured again"))
    again, decision = choose_precision(cfg, DNA, example_rows, CPU)
    assert again == "bf16" and "measured earlier" in decision["reason"]
    # a generator that is faster in fp32 and dominates the schedule: fp32 (the sum decides)
    cache.unlink()
    monkeypatch.setattr(autotune, "_measure", _figures({"encoder": 1.0, "generator": 1.0,
                                                        "bank": 1.0},
                                                       {"encoder": 0.9, "generator": 5.0,
                                                        "bank": 0.9}))
    assert choose_precision(cfg, DNA, example_rows, CPU)[0] == "fp32"
    # a tie is fp32
    cache.unlink()
    same = {"encoder": 1.0, "generator": 1.0, "bank": 1.0}
    monkeypatch.setattr(autotune, "_measure", _figures(same, same))
    assert choose_precision(cfg, DNA, example_rows, CPU)[0] == "fp32"


def test_no_native_bf16_is_fp32_without_measuring(example_rows, monkeypatch):
    monkeypatch.setattr(autotune, "native_bf16", lambda device: False)
    monkeypatch.setattr(autotune, "_measure", lambda *a: pytest.fail("measured"))
    precision, decision = choose_precision(resolve_config("tiny"), DNA, example_rows, CPU)
    assert precision == "fp32" and "not native" in decision["reason"]


@pytest.mark.skipif(not native_bf16(CPU), reason="bf16 is measured only where it is native")
def test_measurement_times_both_candidates_and_leaves_the_random_state(example_rows, cache):
    cfg = resolve_config("tiny", overrides=MICRO)
    state = torch.get_rng_state()
    counts = autotune._phase_counts(cfg, len(example_rows), 1)
    figures = autotune._measure(cfg, DNA, example_rows, CPU, counts)
    assert torch.equal(torch.get_rng_state(), state)
    assert set(figures) == {"fp32", "bf16"}
    assert all(set(v) == {"encoder", "generator", "bank"} and min(v.values()) > 0
               for v in figures.values())


def test_batch_scaling_multiplies_batches_and_scales_learning_rates_by_the_square_root():
    cfg = resolve_config("default")
    assert scale_batches(cfg, 1) is cfg
    big = scale_batches(cfg, 4)
    assert (big.optim.batch_size, big.generator.batch_size, big.bank.batch_size) == (
        4 * cfg.optim.batch_size, 4 * cfg.generator.batch_size, 4 * cfg.bank.batch_size)
    assert big.optim.lr == pytest.approx(2 * cfg.optim.lr)
    assert big.generator.lr == pytest.approx(2 * cfg.generator.lr)
    assert big.hash() != cfg.hash() and big.batch_scaling == cfg.batch_scaling == "auto"
    assert resolve_config("tiny", overrides=["batch_scaling=fixed"]).hash() == \
        resolve_config("tiny").hash()  # how batches are chosen is not what is computed


def test_on_a_cpu_batches_stay_as_configured(example_fasta, tmp_path, cache):
    fit(example_fasta, tmp_path / "run", preset="tiny", overrides=MICRO, precision="fp32")
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    scaling = saved["resolved_batch_scaling"]
    assert scaling["multiplier"] == 1 and "cpu" in scaling["reason"]
    assert scaling["optim.batch_size"] == 32 and saved["optim"]["batch_size"] == 32
    assert saved["resolved_precision"] == "fp32"
    assert saved["precision_decision"]["reason"] == "set in the configuration"


def test_a_scaled_batch_stops_and_resumes_bit_for_bit(example_rows, tmp_path):
    """At twice the batch (2 encoder steps per epoch): stopped mid-unit (checkpoint) or killed
    (no checkpoint at that moment) in each stage, resumed: the uninterrupted run's weights."""
    cfg = scale_batches(resolve_config("tiny", overrides=MICRO), 2)
    reference = make_trainer(cfg, example_rows, tmp_path / "ref")
    reference.run()
    assert reference.setup.batch == 64 and reference.setup.steps_per_epoch == 2
    for poll, kind in ((1, "stop"), (5, "stop"), (12, "stop"), (6, "kill"), (11, "kill")):
        run_dir = tmp_path / f"{kind}{poll}"
        def stop(poll: int = poll, calls: dict = {"n": 0}) -> bool:  # noqa: B006 - per run
            calls["n"] += 1
            return calls["n"] == poll

        with pytest.raises(StopRequested if kind == "stop" else KeyboardInterrupt):
            make_trainer(cfg, example_rows, run_dir,
                         should_stop=stop if kind == "stop" else crash_at(poll)).run()
        resumed = make_trainer(cfg, example_rows, run_dir)
        assert resumed.resume()
        resumed.run()
        assert_same(final_state(resumed), final_state(reference))


def test_fit_resumed_keeps_the_recorded_batch_scale_and_precision(example_fasta, tmp_path,
                                                                  cache, monkeypatch):
    """A run whose decisions were x2 and bf16, stopped by SIGUSR1 and resumed where the
    decisions would now differ (x1, fp32), ends as the uninterrupted x2 / bf16 run."""
    overrides = [*MICRO, "checkpoint_every_s=0"]
    monkeypatch.setattr(autotune, "_batch_multiplier", lambda *a: (2, "test"))
    monkeypatch.setattr(autotune, "choose_precision",
                        lambda *a, **k: ("bf16", {"reason": "test"}))
    fit(example_fasta, tmp_path / "ref", preset="tiny", overrides=overrides)
    saved = yaml.safe_load((tmp_path / "ref" / "config.yaml").read_text())
    assert saved["resolved_batch_scaling"]["optim.batch_size"] == 64
    assert saved["optim"]["batch_size"] == 32  # the configured value stays the record
    assert saved["resolved_precision"] == "bf16"

    generator_block = loop.generator_block

    def stop_after_first(*args):  # noqa: ANN002, ANN202
        loss = generator_block(*args)
        os.kill(os.getpid(), signal.SIGUSR1)
        return loss

    monkeypatch.setattr(loop, "generator_block", stop_after_first)
    with pytest.raises(Preempted):
        fit(example_fasta, tmp_path / "run", preset="tiny", overrides=overrides)
    monkeypatch.setattr(loop, "generator_block", generator_block)
    monkeypatch.setattr(autotune, "_batch_multiplier",
                        lambda *a: pytest.fail("the batch scale was decided again"))
    monkeypatch.setattr(autotune, "choose_precision",
                        lambda *a, **k: pytest.fail("the precision was decided again"))
    fit(example_fasta, tmp_path / "run", preset="tiny", overrides=overrides, resume=True)
    ref = torch.load(tmp_path / "ref" / "encoder.pt", weights_only=True)
    got = torch.load(tmp_path / "run" / "encoder.pt", weights_only=True)
    assert_same(ref["encoder"], got["encoder"])
    assert got["config"]["optim"]["batch_size"] == 64
    record = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert record["resolved_precision"] == "bf16"
    assert "resumed" in record["precision_decision"]["reason"]
    assert "resumed" in record["resolved_batch_scaling"]["reason"]


def test_a_damaged_tuning_cache_is_measured_again(example_rows, cache, monkeypatch):
    cache.write_text("{not json")
    monkeypatch.setattr(autotune, "native_bf16", lambda device: True)
    monkeypatch.setattr(autotune, "_measure", _figures(
        {"encoder": 1.0, "generator": 1.0, "bank": 1.0},
        {"encoder": 0.5, "generator": 0.5, "bank": 0.5}))
    assert choose_precision(resolve_config("tiny"), DNA, example_rows, CPU)[0] == "bf16"
    table = json.loads(cache.read_text())
    assert len(table) == 1 and np.isclose(next(iter(table.values()))["bf16"]["encoder"], 0.5)
