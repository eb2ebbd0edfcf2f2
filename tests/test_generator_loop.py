"""The generator loop without per-step host syncs: losses checked in batches (a non-finite one
still named by its step, before anything is written), the EMA in fused multi-tensor updates,
host-to-device copies that do not wait; all the same numbers as before on a CPU."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import MICRO
from test_train import make_trainer

from diffaug_genomics.config import resolve_config
from diffaug_genomics.guards import NonFiniteError
from diffaug_genomics.train.generator_phase import _ema_update
from diffaug_genomics.transfer import to_device


def test_fused_ema_update_is_the_per_tensor_lerp_bit_for_bit():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv1d(4, 8, 3), torch.nn.BatchNorm1d(8),
                                torch.nn.Linear(5, 3))
    ema = torch.nn.Sequential(torch.nn.Conv1d(4, 8, 3), torch.nn.BatchNorm1d(8),
                              torch.nn.Linear(5, 3))
    model[1].running_mean.normal_()
    expected = [e.detach().clone().lerp_(p.detach(), 1 - 0.9) for e, p in
                zip(ema.parameters(), model.parameters(), strict=True)]
    _ema_update(ema, model, 0.9)
    for got, want in zip(ema.parameters(), expected, strict=True):
        assert torch.equal(got, want)
    for e, b in zip(ema.buffers(), model.buffers(), strict=True):
        assert torch.equal(e, b)


def test_to_device_on_a_cpu_is_the_tensor_itself():
    t = torch.arange(5)
    assert to_device(t, torch.device("cpu")) is t


def test_a_non_finite_generator_loss_is_named_by_its_step_before_any_checkpoint(
        example_rows, tmp_path, monkeypatch):
    """Losses are read every ``log_every`` steps: the NaN of step 4 (of 6, log_every 5) stops
    the run naming step 4, and the checkpoint on disk is the warm-up's."""
    from diffaug_genomics.diffusion import Diffusion

    cfg = resolve_config("tiny", overrides=[*MICRO, "log_every=5", "checkpoint_every_s=0"])
    cfg = dataclasses.replace(cfg, generator=dataclasses.replace(cfg.generator,
                                                                 steps_per_checkpoint=6))
    calls = {"n": 0}
    loss = Diffusion.loss

    def nan_at_fourth(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls["n"] += 1
        value = loss(*args, **kwargs)
        return value * float("nan") if calls["n"] == 4 else value

    monkeypatch.setattr(Diffusion, "loss", nan_at_fourth)
    trainer = make_trainer(cfg, example_rows, tmp_path)
    with pytest.raises(NonFiniteError, match="generator loss became nan at step 4"):
        trainer.run()
    saved = torch.load(tmp_path / "checkpoints" / "latest.pt", weights_only=True)
    assert saved["progress"]["gen_step"] == 0  # written after the warm-up, not since
    assert all(torch.isfinite(v).all() for v in saved["ema"].values() if v.is_floating_point())
