"""Mixed precision, torch.compile's fallback and the checkpoint cadence of the training loop."""

from __future__ import annotations

import csv
import logging

import numpy as np
import pytest
import torch
from conftest import MICRO
from test_train import assert_same, crash_at, final_state, make_trainer

from diffaug_genomics.config import config_from_dict, resolve_config
from diffaug_genomics.errors import ConfigError
from diffaug_genomics.modalities.registry import get_modality
from diffaug_genomics.train import compiled
from diffaug_genomics.train.loop import StopRequested
from diffaug_genomics.train.precision import Autocast, native_bf16, resolve_precision, wrap

CPU = torch.device("cpu")


def encoder_losses(run_dir) -> list[float]:
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    return [float(r["loss"]) for r in rows if r["phase"] in ("warmup", "encoder") and r["loss"]]


def generator_losses(run_dir) -> list[float]:
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    return [float(r["loss"]) for r in rows if r["phase"] == "generator" and r["loss"]]


def test_auto_means_bf16_only_where_the_device_computes_it_natively():
    assert resolve_precision("auto", CPU) == ("bf16" if native_bf16(CPU) else "fp32")
    assert resolve_precision("fp32", CPU) == "fp32"
    assert resolve_precision("bf16", CPU) == "bf16"
    assert resolve_precision("auto", torch.device("mps")) == "fp32"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16", CPU)


def test_precision_is_a_checked_config_key_outside_the_run_hash():
    cfg = resolve_config("tiny", precision="bf16")
    assert cfg.precision == "bf16"
    assert cfg.hash() == resolve_config("tiny").hash()  # how a run computes, not what
    with pytest.raises(ConfigError, match="precision"):
        resolve_config("tiny", overrides=["precision=fp16"])
    # a run saved before the key existed was computed in float32 and stays so
    saved = resolve_config("tiny").to_dict()
    del saved["precision"]
    assert config_from_dict(saved).precision == "fp32"


def test_fp32_wrap_is_the_module_itself_and_bf16_computes_in_bf16_returns_fp32():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))
    assert wrap(net, CPU, "fp32") is net
    x = torch.randn(16, 32)
    auto = wrap(net, CPU, "bf16")
    assert isinstance(auto, Autocast)
    out, ref = auto(x), net(x)
    assert out.dtype == torch.float32
    assert not torch.equal(out, ref)  # bfloat16 arithmetic inside
    assert torch.allclose(out, ref, atol=0.05, rtol=0.05)
    assert list(auto.module.state_dict()) == list(net.state_dict())
    auto.eval()
    assert not net.training


@pytest.fixture(scope="module")
def runs(example_rows, tmp_path_factory):
    """The micro run in fp32 and in bf16 (same seed)."""
    out = {}
    for precision in ("fp32", "bf16"):
        run_dir = tmp_path_factory.mktemp(precision)
        cfg = resolve_config("tiny", overrides=MICRO, precision=precision)
        trainer = make_trainer(cfg, example_rows, run_dir)
        trainer.run()
        out[precision] = (trainer, run_dir, cfg)
    return out


def test_bf16_follows_the_fp32_loss_trajectory_within_tolerance(runs, example_rows):
    """Stated tolerance: every logged loss within 2 % of the fp32 run's (encoder and generator,
    same seed, same draws), master weights float32, and the final embeddings of every row
    within 0.05 cosine distance of the fp32 run's."""
    (t32, d32, _), (t16, d16, _) = runs["fp32"], runs["bf16"]
    assert t16.setup.precision == "bf16" and t32.setup.precision == "fp32"
    for losses in (encoder_losses, generator_losses):
        a, b = np.array(losses(d32)), np.array(losses(d16))
        assert len(a) == len(b) > 0
        assert not np.array_equal(a, b)  # the run really computed in bf16
        np.testing.assert_allclose(b, a, rtol=0.02)
    assert all(p.dtype == torch.float32 for p in t16.models.encoder.parameters())
    assert all(p.dtype == torch.float32 for p in t16.models.denoiser.parameters())
    x = get_modality("dna").to_model(example_rows)
    with torch.no_grad():
        z32, z16 = t32.models.encoder.eval()(x), t16.models.encoder.eval()(x)
    cos = torch.nn.functional.cosine_similarity(z32, z16)
    assert float(cos.min()) > 0.95


def test_bf16_run_stops_and_resumes_bit_for_bit(runs, example_rows, tmp_path):
    trainer, ref_dir, cfg = runs["bf16"]
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] == 13

    with pytest.raises(StopRequested):
        make_trainer(cfg, example_rows, tmp_path, should_stop=stop).run()
    resumed = make_trainer(cfg, example_rows, tmp_path)
    assert resumed.resume()
    resumed.run()
    assert_same(final_state(resumed), final_state(trainer))
    assert encoder_losses(tmp_path) == encoder_losses(ref_dir)


@pytest.mark.parametrize("every", [0.0, 1e9])
def test_checkpoint_cadence_leaves_the_result_unchanged(every, runs, example_rows, tmp_path,
                                                        monkeypatch):
    """``checkpoint_every_s = 0`` writes a checkpoint after every unit; a long interval only at
    stage ends and stops; a crash resumes from the last one, bit for bit either way."""
    trainer, _, cfg = runs["bf16"]
    cfg = resolve_config("tiny", overrides=[*MICRO, f"checkpoint_every_s={every}"],
                         precision="bf16")
    written = []
    from diffaug_genomics.train.loop import Trainer

    save = Trainer.save_checkpoint
    monkeypatch.setattr(Trainer, "save_checkpoint",
                        lambda self: (written.append(self.progress.stage_idx), save(self))[1])
    with pytest.raises(KeyboardInterrupt):  # poll 20 is round 2's first generator step
        make_trainer(cfg, example_rows, tmp_path, should_stop=crash_at(20)).run()
    # stage index after each write: warm-up, generator units 1 and 2, bank, encoder
    assert written == ([1, 1, 2, 3, 4] if every == 0 else [1, 2, 3, 4])
    resumed = make_trainer(cfg, example_rows, tmp_path)
    assert resumed.resume()
    assert (resumed.progress.stage_idx, resumed.progress.unit_idx) == (4, 0)
    resumed.run()
    assert_same(final_state(resumed), final_state(trainer))


def test_compile_failure_falls_back_to_eager_with_one_warning(monkeypatch, caplog):
    def broken(module, **_):
        def call(*args, **kwargs):
            raise RuntimeError("no C++ compiler found\nlong traceback")
        return call

    monkeypatch.setattr(torch, "compile", broken)
    torch.manual_seed(0)
    net = torch.nn.Linear(8, 4)
    wrapped = compiled.maybe_compile(net, True, "encoder")
    assert compiled.maybe_compile(net, False, "encoder") is net
    x = torch.randn(3, 8)
    with caplog.at_level(logging.WARNING, logger="diffaug_genomics"):
        out1, out2 = wrapped(x), wrapped(x)
    assert torch.equal(out1, net(x)) and torch.equal(out2, net(x))
    warnings = [r for r in caplog.records if "--compile" in r.getMessage()]
    assert len(warnings) == 1 and "no C++ compiler found" in warnings[0].getMessage()
    assert "long traceback" not in warnings[0].getMessage()
    assert list(wrapped.module.state_dict()) == list(net.state_dict())


def test_a_full_bank_skips_the_mixup_without_changing_the_run(runs, example_rows, tmp_path,
                                                             monkeypatch):
    """With ``bank.fraction = 1`` the encoder stage does not compute kNN-mixup positives it
    would replace anyway; the random stream, and so the run, is the same as computing them."""
    from diffaug_genomics.train import encoder_phase

    trainer, _, cfg = runs["bf16"]
    assert cfg.bank.fraction == 1.0
    monkeypatch.setattr(encoder_phase, "bank_replaces_all", lambda setup, progress, stage: False)
    slow = make_trainer(cfg, example_rows, tmp_path)
    slow.run()
    assert_same(final_state(slow), final_state(trainer))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.compile's own imports
def test_wrappers_share_the_wrapped_modules_train_eval_flag():
    """The sampler saves ``model.training``, calls ``eval()`` and restores it: through a wrapper
    that must leave an EMA denoiser in evaluation mode as it found it."""
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.5))
    for wrapped in (wrap(net, CPU, "bf16"), compiled.Compiled(net, "test")):
        net.eval()
        assert wrapped.training is False
        was = wrapped.training
        wrapped.eval()
        wrapped.train(was)
        assert net.training is False
        wrapped.train()
        assert net.training and wrapped.training


def test_a_fresh_start_drops_rows_a_run_killed_before_its_first_checkpoint_left(
        example_rows, tmp_path):
    cfg = resolve_config("tiny", overrides=MICRO, precision="bf16")
    with pytest.raises(KeyboardInterrupt):  # inside the warm-up: no checkpoint yet
        make_trainer(cfg, example_rows, tmp_path, should_stop=crash_at(3)).run()
    assert not (tmp_path / "checkpoints" / "latest.pt").exists()
    assert len(encoder_losses(tmp_path)) > 0
    again = make_trainer(cfg, example_rows, tmp_path)
    assert not again.resume()
    again.run()
    ref = make_trainer(cfg, example_rows, tmp_path / "ref")
    ref.run()
    assert encoder_losses(tmp_path) == encoder_losses(tmp_path / "ref")


def test_a_trained_run_samples_in_the_precision_it_measured_on_this_kind_of_device(monkeypatch):
    from diffaug_genomics.train import precision as prec
    from diffaug_genomics.train.precision import run_precision

    monkeypatch.setattr(prec, "native_bf16", lambda device: True)
    measured = {"resolved_precision": "fp32", "precision_decision": {"device": "cpu"}}
    assert run_precision("auto", measured, CPU) == "fp32"  # measured, not the rule (bf16)
    elsewhere = {**measured, "precision_decision": {"device": "cuda"}}
    assert run_precision("auto", elsewhere, CPU) == "bf16"  # trained on a GPU: the rule here
    assert run_precision("auto", {}, CPU) == "bf16"  # a run from before the decision
    assert run_precision("bf16", measured, CPU) == "bf16"  # set explicitly: as set
    bf16_run = {"resolved_precision": "bf16", "precision_decision": {"device": "cpu"}}
    monkeypatch.setattr(prec, "native_bf16", lambda device: False)
    assert run_precision("auto", bf16_run, CPU) == "fp32"  # never emulated bfloat16


def test_generate_on_an_auto_run_uses_the_run_s_decision(tmp_path, example_h5, one_thread,
                                                          monkeypatch):
    import yaml

    from diffaug_genomics.fit import fit
    from diffaug_genomics.runs import load_run
    from diffaug_genomics.train import precision as prec

    run = tmp_path / "run"
    fit(example_h5, run, preset="tiny", overrides=MICRO, seed=0, precision="auto")
    monkeypatch.setattr(prec, "native_bf16", lambda device: True)  # the rule would say bf16
    record = yaml.safe_load((run / "config.yaml").read_text())
    assert record["precision_decision"]["device"] == "cpu"
    record["resolved_precision"] = "fp32"  # as if measured faster here
    (run / "config.yaml").write_text(yaml.safe_dump(record))
    loaded = load_run(run, CPU, with_generator=True)
    assert loaded.sampler is loaded.denoiser  # fp32: the denoiser itself, no autocast
    record["precision_decision"]["device"] = "cuda"  # decided on another kind of device
    (run / "config.yaml").write_text(yaml.safe_dump(record))
    assert isinstance(load_run(run, CPU, with_generator=True).sampler, Autocast)
