"""The training loop: schedule, exact resume, determinism, the bank of generated positives."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import MICRO

from diffaug_genomics.config import resolve_config
from diffaug_genomics.modalities.registry import get_modality
from diffaug_genomics.train.encoder_phase import positives
from diffaug_genomics.train.loop import StopRequested, Trainer, plan


def make_trainer(cfg, rows, run_dir: Path, should_stop=None) -> Trainer:
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    (run_dir / "cache").mkdir(exist_ok=True)
    return Trainer(cfg, get_modality("dna"), rows, run_dir, torch.device("cpu"),
                   should_stop=should_stop)


def crash_at(poll: int):
    """A ``should_stop`` that dies (KeyboardInterrupt: no checkpoint at that moment) at its
    ``poll``-th call; the loop polls after every step and every unit."""
    calls = {"n": 0}

    def crash() -> bool:
        calls["n"] += 1
        if calls["n"] == poll:
            raise KeyboardInterrupt
        return False

    return crash


def final_state(trainer: Trainer) -> dict[str, torch.Tensor]:
    state = {f"encoder.{k}": v for k, v in trainer.models.encoder.state_dict().items()}
    state.update({f"head.{k}": v for k, v in trainer.models.head.state_dict().items()})
    if trainer.models.ema is not None:
        state.update({f"ema.{k}": v for k, v in trainer.models.ema.state_dict().items()})
    return state


def stop_at_last_step_and_resume(cfg, rows, run_dir: Path) -> Trainer:
    """A run stopped (checkpointed) before its last encoder step, resumed and finished."""
    stopper = make_trainer(cfg, rows, run_dir,
                           should_stop=lambda: stopper.progress.enc_step
                           == stopper.setup.total_enc_steps - 1)
    with pytest.raises(StopRequested):
        stopper.run()
    resumed = make_trainer(cfg, rows, run_dir)
    assert resumed.resume()
    resumed.run()
    return resumed


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def micro_cfg():
    return resolve_config("tiny", overrides=MICRO)


@pytest.fixture(scope="module")
def reference(micro_cfg, example_rows, tmp_path_factory):
    """One uninterrupted micro run, shared by the resume tests."""
    run_dir = tmp_path_factory.mktemp("reference")
    trainer = make_trainer(micro_cfg, example_rows, run_dir)
    trainer.run()
    return trainer, run_dir


def test_plan_gives_baselines_the_same_encoder_budget(micro_cfg):
    kinds = [(s.kind, s.round, s.units) for s in plan(micro_cfg)]
    assert kinds == [("warmup", 0, 1), ("generator", 1, 2), ("bank", 1, 1), ("encoder", 1, 1),
                     ("generator", 2, 2), ("bank", 2, 1), ("encoder", 2, 1)]
    for augment in ("knn-mixup", "handcrafted"):
        cfg = resolve_config("tiny", overrides=MICRO, augment=augment)
        assert [(s.kind, s.units) for s in plan(cfg)] == [("encoder", 3)]


def test_run_writes_checkpoints_metrics_and_final_weights(reference):
    trainer, run_dir = reference
    for name in ("checkpoints/latest.pt", "checkpoints/warmup.pt", "checkpoints/round1.pt",
                 "checkpoints/round2.pt", "encoder.pt", "generator.pt", "metrics.csv"):
        assert (run_dir / name).is_file(), name
    state = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=True)
    assert state["progress"]["stage"] == len(trainer.setup.stages)
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    phases = {r["phase"] for r in rows}
    assert phases == {"init", "warmup", "generator", "bank", "encoder"}
    steps = [r for r in rows if r["loss"] != ""]
    assert all(np.isfinite(float(r["loss"])) for r in steps if r["phase"] != "bank")
    assert {"time_s", "phase", "round", "epoch", "step", "loss", "lr", "samples_per_s"} <= rows[0].keys()
    # one diagnostic row (empty loss) before training and after every encoder epoch / generator
    # unit: eff_rank and cond_gain there, never on step rows
    diag = [r for r in rows if r["loss"] == ""]
    ranks = [(r["phase"], r["epoch"]) for r in diag if r["eff_rank"]]
    assert ranks == [("init", "-1"), ("warmup", "0"), ("encoder", "0"), ("encoder", "0")]
    assert all(0 < float(r["eff_rank"]) <= trainer.setup.cfg.encoder.embed_dim for r in diag
               if r["eff_rank"])
    assert len([r for r in diag if r["cond_gain"]]) == 4  # 2 rounds x 2 generator units
    assert not any(r["eff_rank"] or r["cond_gain"] for r in steps)
    bank = [r for r in rows if r["phase"] == "bank"]
    assert all(0.3 < float(r["pos_identity_source"]) < 1 and float(r["pos_kmer3_l1"]) > 0
               for r in bank)


def test_bank_is_filled_non_trivial_and_refreshed_each_round(reference, example_rows):
    trainer, run_dir = reference
    assert trainer.progress.bank.shape == (len(example_rows), 1, 4, 200)  # (N, per_sequence, 4, L)
    bank = trainer.progress.bank[:, 0].float()  # the round-2 bank in [0, 1]
    assert bank.abs().sum() > 0 and bank.std() > 0.05  # not the zero vectors of the published code
    source = torch.from_numpy(example_rows).permute(0, 2, 1).float()
    identity = (bank.argmax(1) == source.argmax(1)).float().mean().item()
    assert 0.3 < identity < 0.999, identity  # close to the source, not a copy
    rows = [r for r in csv.DictReader(open(run_dir / "metrics.csv")) if r["phase"] == "bank"]
    assert [r["round"] for r in rows] == ["1", "2"]
    assert float(rows[1]["loss"]) > 0.05  # fraction of bank values changed from round 1


def test_discrete_bank_holds_real_sequences_near_the_continuous_one(micro_cfg, reference,
                                                                    example_rows, tmp_path):
    """``bank.discrete``: the same samples as the continuous bank, snapped to one-hot DNA."""
    import dataclasses

    cfg = dataclasses.replace(micro_cfg, bank=dataclasses.replace(micro_cfg.bank, discrete=True))
    assert cfg.hash() != micro_cfg.hash()
    trainer = make_trainer(cfg, example_rows, tmp_path / "run")
    trainer.run()
    bank = trainer.progress.bank[:, 0].float()
    assert set(bank.unique().tolist()) == {0.0, 1.0} and bool((bank.sum(1) == 1).all())
    continuous = reference[0].progress.bank[:, 0].float()
    # Up to the last round's encoder epochs (which now saw other positives), the same draws:
    # most positions keep the continuous sample's argmax base.
    agree = (bank.argmax(1) == continuous.argmax(1)).float().mean().item()
    assert agree > 0.8, agree


def test_several_positives_per_sequence_are_distinct_draws_and_all_used(micro_cfg, reference,
                                                                        example_rows, tmp_path):
    """``bank.per_sequence = 3``: three different generated positives of every sample; encoder
    steps pick among them (``both_views``: two different draws as the two views, never the
    source), and resume stays exact."""
    import dataclasses

    bank_cfg = dataclasses.replace(micro_cfg.bank, per_sequence=3, both_views=True)
    cfg = dataclasses.replace(micro_cfg, bank=bank_cfg)
    trainer = make_trainer(cfg, example_rows, tmp_path / "run")
    trainer.run()
    bank = trainer.progress.bank.float()
    assert bank.shape == (len(example_rows), 3, 4, 200)
    for a, b in ((0, 1), (0, 2), (1, 2)):
        differ = (bank[:, a].argmax(1) != bank[:, b].argmax(1)).float().mean().item()
        assert differ > 0.05, (a, b, differ)  # distinct samples, not copies of one
    # the views a step sees: two different draws of the same sample, never the source
    stage = trainer.setup.stages[-1]
    idx = np.arange(16)
    x = trainer.setup.x(idx)
    anchor, pos = positives(trainer.setup, trainer.models, trainer.progress, stage, idx, x,
                            torch.Generator().manual_seed(0))
    drawn = {(i, d) for i in range(16) for d in range(3)
             for view in (anchor, pos) if torch.equal(view[i].half(), trainer.progress.bank[i, d])}
    assert len(drawn) == 32 and not any(torch.equal(anchor[i], x[i]) for i in range(16))
    assert {d for _, d in drawn} == {0, 1, 2}
    # the encoder trained differently from the one-positive reference
    assert not torch.equal(trainer.models.encoder.fc.weight, reference[0].models.encoder.fc.weight)
    # stop mid-encoder-phase and resume: the same weights
    assert_same(final_state(stop_at_last_step_and_resume(cfg, example_rows, tmp_path / "stopped")),
                final_state(trainer))


def test_both_views_needs_two_positives_per_sequence():
    from diffaug_genomics.errors import ConfigError

    with pytest.raises(ConfigError, match="bank.both_views"):
        resolve_config("tiny", overrides=["bank.both_views=true"])
    cfg = resolve_config("tiny", overrides=["bank.both_views=true", "bank.per_sequence=2"])
    assert cfg.bank.per_sequence == 2 and cfg.hash() != resolve_config("tiny").hash()


@pytest.mark.parametrize("stop_at", [2, 7, 13, 19])
def test_stop_and_resume_is_bit_for_bit(micro_cfg, example_rows, reference, tmp_path, stop_at):
    """Stopping mid-unit (a checkpoint is written) at steps in warm-up, generator and encoder
    stages, then resuming in a fresh Trainer, ends with exactly the reference weights."""
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] == stop_at

    with pytest.raises(StopRequested):
        make_trainer(micro_cfg, example_rows, tmp_path, should_stop=stop).run()
    resumed = make_trainer(micro_cfg, example_rows, tmp_path)
    assert resumed.resume()
    resumed.run()
    assert_same(final_state(resumed), final_state(reference[0]))
    ref_rows = list(csv.reader(open(reference[1] / "metrics.csv")))
    new_rows = list(csv.reader(open(tmp_path / "metrics.csv")))
    assert [r[1:6] for r in new_rows] == [r[1:6] for r in ref_rows]  # same steps and losses
    assert [r[8:] for r in new_rows] == [r[8:] for r in ref_rows]  # and the same diagnostics


def test_kill_without_checkpoint_then_resume_is_bit_for_bit(micro_cfg, example_rows, reference,
                                                           tmp_path):
    """A crash (no checkpoint at the moment of death) resumes from the last unit boundary."""
    with pytest.raises(KeyboardInterrupt):
        make_trainer(micro_cfg, example_rows, tmp_path, should_stop=crash_at(16)).run()
    resumed = make_trainer(micro_cfg, example_rows, tmp_path)
    assert resumed.resume()
    assert resumed.progress.stage_idx > 0
    resumed.run()
    assert_same(final_state(resumed), final_state(reference[0]))


def test_same_seed_same_weights_other_seed_differs(example_rows, tmp_path):
    overrides = MICRO + ["schedule.rounds=0", "schedule.warmup_epochs=2"]
    runs = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        cfg = resolve_config("tiny", overrides=overrides, seed=seed)
        trainer = make_trainer(cfg, example_rows, tmp_path / name)
        trainer.run()
        runs.append(final_state(trainer))
    assert_same(runs[0], runs[1])
    assert any(not torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


@pytest.mark.parametrize("augment", ["knn-mixup", "handcrafted"])
def test_baselines_train_the_same_encoder_without_a_generator(augment, example_rows, tmp_path):
    cfg = resolve_config("tiny", overrides=MICRO, augment=augment)
    trainer = make_trainer(cfg, example_rows, tmp_path)
    before = {k: v.clone() for k, v in trainer.models.encoder.state_dict().items()}
    trainer.run()
    assert (tmp_path / "encoder.pt").exists() and not (tmp_path / "generator.pt").exists()
    assert trainer.progress.enc_step == 3 * trainer.setup.steps_per_epoch
    changed = [k for k, v in trainer.models.encoder.state_dict().items()
               if v.dtype.is_floating_point and not torch.equal(v, before[k])]
    assert changed


def test_resume_refuses_a_different_configuration(micro_cfg, example_rows, reference, tmp_path):
    import shutil

    from diffaug_genomics.errors import InputError

    shutil.copytree(reference[1] / "checkpoints", tmp_path / "checkpoints")
    other = resolve_config("tiny", overrides=MICRO + ["encoder.width=24"])
    with pytest.raises(InputError, match="different configuration"):
        make_trainer(other, example_rows, tmp_path).resume()


def test_spectrum_encoder_run_stops_and_resumes_bit_for_bit(example_rows, tmp_path):
    """The default preset's encoder (data-dependent initialisation from the training rows)
    resumes exactly too: fit_init is recomputed, then the checkpoint replaces it."""
    cfg = resolve_config("tiny", overrides=MICRO + ["encoder.backbone=spectrum",
                                                    "encoder.kmer_k=3"])
    ref = make_trainer(cfg, example_rows, tmp_path / "ref")
    ref.run()
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] == 13  # inside round 1

    with pytest.raises(StopRequested):
        make_trainer(cfg, example_rows, tmp_path / "run", should_stop=stop).run()
    resumed = make_trainer(cfg, example_rows, tmp_path / "run")
    assert resumed.resume()
    resumed.run()
    assert_same(final_state(resumed), final_state(ref))


def test_a_checkpoint_from_before_the_discovery_resumes_without_a_symmetry(example_fasta,
                                                                          tmp_path):
    """A run started by a version without symmetry discovery (its checkpoint has no group and
    its spectrum encoder no ``symmetry`` buffer) resumes as it was started: no symmetry,
    neither in the encoder nor in the positives, and says so."""
    from conftest import read_example_rows

    example_rows = read_example_rows(example_fasta)  # all 500: enough rows to measure
    cfg = resolve_config("tiny", overrides=MICRO + ["encoder.backbone=spectrum",
                                                    "encoder.kmer_k=3"])
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] == 6

    with pytest.raises(StopRequested):
        make_trainer(cfg, example_rows, tmp_path, should_stop=stop).run()
    latest = tmp_path / "checkpoints" / "latest.pt"
    state = torch.load(latest, weights_only=True)
    del state["symmetry_group"], state["encoder"]["symmetry"]  # as an older version wrote it
    torch.save(state, latest)
    resumed = make_trainer(cfg, example_rows, tmp_path)
    assert resumed.progress.symmetry.group == [0, 47]  # the rows are strand-symmetric DHS...
    assert resumed.resume()
    assert resumed.progress.symmetry.group == [0]  # ...the run keeps none
    assert resumed.models.encoder.group == [0]
    assert "without the discovery" in resumed.progress.symmetry.to_record()["reason"]
    resumed.run()


def test_the_run_s_clock_starts_once_it_is_built(example_rows, tmp_path, monkeypatch):
    """metrics.csv's time_s counts training, not the build (symmetry discovery, PCA start):
    a resumed run's first row would otherwise add its whole build to a stage's time."""
    import time

    from diffaug_genomics.train import loop

    real = loop.build_models

    def slow_build(setup):
        time.sleep(1.0)  # as a PCA start over many rows
        return real(setup)

    monkeypatch.setattr(loop, "build_models", slow_build)
    cfg = resolve_config("tiny", overrides=MICRO + ["schedule.rounds=0"])
    make_trainer(cfg, example_rows[:128], tmp_path / "run").run()
    first = next(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert first["phase"] == "init" and float(first["time_s"]) < 1.0
