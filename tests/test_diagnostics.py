"""Label-free diagnostics against direct computations, the EMA restart and the batch-norm
recalibration of the frozen encoder."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import MICRO
from torch import nn

from diffaug_genomics.config import resolve_config
from diffaug_genomics.diagnostics import (
    condition_gain,
    diagnostic_sample,
    dna_positive_stats,
    effective_rank,
)
from diffaug_genomics.diffusion import Diffusion
from diffaug_genomics.modalities.registry import get_modality
from diffaug_genomics.train import checkpoint as ckpt
from diffaug_genomics.train.loop import StopRequested, Trainer, _ema_update, ema_decay_at


def make_trainer(cfg, rows, run_dir: Path, should_stop=None) -> Trainer:
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    (run_dir / "cache").mkdir(exist_ok=True)
    return Trainer(cfg, get_modality("dna"), rows, run_dir, torch.device("cpu"),
                   should_stop=should_stop)


# ------------------------------------------------------------------------------ effective rank
@pytest.mark.parametrize("rank", [1, 3, 10])
def test_effective_rank_of_a_matrix_with_equal_singular_values_is_its_rank(rank):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, rank))
    q, _ = np.linalg.qr(a - a.mean(axis=0))  # orthonormal, centred columns
    basis, _ = np.linalg.qr(rng.normal(size=(32, rank)))
    m = 5.0 * q @ basis.T  # (400, 32), rank r, r equal singular values, already centred
    assert effective_rank(m) == pytest.approx(rank, rel=1e-6)


def test_effective_rank_tracks_collapse_and_ignores_the_mean():
    rng = np.random.default_rng(1)
    full = rng.normal(size=(1000, 64))
    assert 50 < effective_rank(full) <= 64
    collapsed = full[:, :1] @ rng.normal(size=(1, 64)) + 1e-6 * full + 100.0  # one direction
    assert effective_rank(collapsed) < 1.1
    assert effective_rank(np.ones((10, 4))) == 0.0  # every row the same
    assert effective_rank(torch.from_numpy(full)) == pytest.approx(effective_rank(full))


def test_diagnostic_sample_is_fixed_bounded_and_seeded():
    a = diagnostic_sample(10_000, seed=0)
    assert len(a) == 2048 and len(set(a.tolist())) == 2048 and a.max() < 10_000
    assert np.array_equal(a, diagnostic_sample(10_000, seed=0))
    assert not np.array_equal(a, diagnostic_sample(10_000, seed=1))
    small = diagnostic_sample(100, seed=3)  # every row, in a random order (prefixes are samples)
    assert np.array_equal(np.sort(small), np.arange(100)) and not np.array_equal(small, np.arange(100))


# ------------------------------------------------------------------------------ condition gain
class _Oracle(nn.Module):
    """Predicts the noise exactly when told the true x0 through its condition."""

    def __init__(self, diffusion: Diffusion, use_cond: bool) -> None:
        super().__init__()
        self.diffusion, self.use_cond = diffusion, use_cond

    def forward(self, x_t, t, cond, drop_cond=None):  # noqa: ANN001, ANN201
        if not self.use_cond:
            return torch.zeros_like(x_t)
        abar = self.diffusion.alphas_cumprod[t].view(-1, 1, 1)
        x0 = cond.view_as(x_t)
        return (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()


def test_condition_gain_is_zero_for_a_denoiser_that_ignores_its_condition():
    diffusion = Diffusion(num_train_timesteps=100)
    x0 = torch.rand(64, 4, 10) * 2 - 1
    cond = x0.flatten(1)
    assert condition_gain(diffusion, _Oracle(diffusion, False), x0, cond, seed=0) == 0.0
    gain = condition_gain(diffusion, _Oracle(diffusion, True), x0, cond, seed=0)
    assert gain > 10  # the true condition gives ~0 error, another row's a large one
    # deterministic for a seed: the same noise and timesteps
    assert gain == condition_gain(diffusion, _Oracle(diffusion, True), x0, cond, seed=0)


# ------------------------------------------------------------------------------ positives
def test_dna_positive_stats_against_direct_computation(example_rows):
    rows = example_rows
    idx = np.arange(10)
    exact = dna_positive_stats(rows[idx], rows[idx].astype(np.float32), idx, rows)
    assert exact["pos_identity_source"] == pytest.approx(1.0)
    assert exact["pos_kmer3_l1"] == pytest.approx(0.0, abs=1e-6)
    # a positive that is another training row: identity to the nearest *other* row is 1
    copies = dna_positive_stats(rows[idx], rows[idx + 20].astype(np.float32), idx, rows)
    assert copies["pos_identity_nearest"] == pytest.approx(1.0)
    direct = (rows[idx + 20].argmax(-1) == rows[idx].argmax(-1)).mean()
    assert copies["pos_identity_source"] == pytest.approx(direct)
    # continuous positives are read by their argmax base
    noisy = rows[idx].astype(np.float32) * 0.6 + 0.1
    assert dna_positive_stats(rows[idx], noisy, idx, rows)["pos_identity_source"] == 1.0


# ------------------------------------------------------------------------------ the EMA
def _ema_weights(n: int, decay: float, warmup: bool) -> np.ndarray:
    """Weight the EMA gives, after n updates, to its starting value (index 0) and to the
    denoiser after each step 1..n: run the real update on one-hot 'parameters'."""
    ema = nn.Linear(n + 1, 1, bias=False, dtype=torch.float64)
    model = nn.Linear(n + 1, 1, bias=False, dtype=torch.float64)
    with torch.no_grad():
        ema.weight.zero_()
        ema.weight[0, 0] = 1.0
        for k in range(n):
            model.weight.zero_()
            model.weight[0, k + 1] = 1.0
            _ema_update(ema, model, ema_decay_at(k, decay) if warmup else decay)
    return ema.weight[0].detach().numpy()


@pytest.mark.parametrize("n, decay", [(20, 0.998), (200, 0.998), (200, 0.9999), (3000, 0.9999)])
def test_ema_is_dominated_by_the_stages_own_later_steps_at_any_budget(n, decay):
    w = _ema_weights(n, decay, warmup=True)
    assert w.sum() == pytest.approx(1.0)
    assert w[0] == 0.0  # nothing of the weights before the stage (other round, initialisation)
    assert w[1: n // 2 + 1].sum() < 0.01  # the first half of the stage's steps: < 1 %
    old = _ema_weights(n, decay, warmup=False)  # the previous behaviour fails the property
    assert old[0] > 0.5 if n <= 200 else old[0] > 0.7


def test_ema_restarts_each_generator_stage(example_rows, tmp_path):
    """Corrupt the EMA between round 1 and round 2: the final generator is unchanged, because
    round 2's EMA restarts from its own denoiser (nothing of round 1's EMA survives)."""
    cfg = resolve_config("tiny", overrides=MICRO)
    reference = make_trainer(cfg, example_rows, tmp_path / "ref")
    reference.run()
    round2_gen = next(i for i, s in enumerate(reference.setup.stages)
                      if s.kind == "generator" and s.round == 2)
    stopper = make_trainer(cfg, example_rows, tmp_path / "run",
                           should_stop=lambda: stopper.progress.stage_idx == round2_gen)
    with pytest.raises(StopRequested):
        stopper.run()
    latest = tmp_path / "run" / "checkpoints" / "latest.pt"
    state = ckpt.load(latest, ckpt.CHECKPOINT_FORMAT)
    assert state["progress"]["stage"] == round2_gen and state["progress"]["unit"] == 0
    state["ema"] = {k: v + 1000.0 if v.is_floating_point() else v for k, v in state["ema"].items()}
    ckpt.save_atomic(state, latest)
    resumed = make_trainer(cfg, example_rows, tmp_path / "run")
    assert resumed.resume()
    resumed.run()
    for key, value in reference.models.ema.state_dict().items():
        assert torch.equal(resumed.models.ema.state_dict()[key], value), key


# ------------------------------------------------------------------------------ batch norm
def _first_bn_statistics(trainer: Trainer) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased variance of the stem convolution's output over the diagnostic rows."""
    with torch.no_grad():
        h = trainer.models.encoder.stem[0](trainer.setup.x(trainer.setup.diag_idx))
    return h.mean(dim=(0, 2)), h.transpose(0, 1).reshape(h.shape[1], -1).var(dim=1)


def test_batchnorm_statistics_are_recomputed_from_the_data_before_freezing(example_rows, tmp_path):
    cfg = resolve_config("tiny", overrides=MICRO)
    trainer = make_trainer(cfg, example_rows, tmp_path / "run")
    trainer.run()
    bn = trainer.models.encoder.stem[1]
    mean, var = _first_bn_statistics(trainer)
    torch.testing.assert_close(bn.running_mean, mean, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(bn.running_var, var, rtol=1e-3, atol=1e-5)
    # the whole network: evaluation mode (running statistics) now gives what training mode
    # (this batch's own statistics) gives on the same rows
    x = trainer.setup.x(trainer.setup.diag_idx)
    with torch.no_grad():
        eval_z = trainer.models.encoder.eval()(x)
        train_z = copy.deepcopy(trainer.models.encoder).train()(x)
    assert (eval_z - train_z).abs().max() < 1e-3 * train_z.abs().max()
    # the saved final encoder holds the recalibrated statistics
    saved = ckpt.load(tmp_path / "run" / "encoder.pt", ckpt.ENCODER_FORMAT)
    assert torch.equal(saved["encoder"]["stem.1.running_mean"], bn.running_mean)

    # without recalibration (the earlier behaviour) the momentum average is far off
    legacy_cfg = resolve_config("tiny", overrides=[*MICRO, "encoder.recalibrate_bn=false"])
    legacy = make_trainer(legacy_cfg, example_rows, tmp_path / "legacy")
    legacy.run()
    legacy_mean, legacy_var = _first_bn_statistics(legacy)
    off = (legacy.models.encoder.stem[1].running_var - legacy_var).abs().max()
    assert off > 10 * (bn.running_var - var).abs().max()


def test_condition_is_computed_with_recalibrated_statistics(example_rows, tmp_path):
    """The generator's condition is the frozen encoder's embedding in evaluation mode after
    the recalibration pass: equal to what a fresh recalibration gives."""
    cfg = resolve_config("tiny", overrides=MICRO)
    trainer = make_trainer(cfg, example_rows, tmp_path / "run")
    gen_stage = next(i for i, s in enumerate(trainer.setup.stages) if s.kind == "generator")
    trainer.setup.should_stop = lambda: trainer.progress.stage_idx == gen_stage
    with pytest.raises(StopRequested):
        trainer.run()
    before = copy.deepcopy(trainer.models.encoder.state_dict())
    trainer._prepare_stage(gen_stage)
    after = trainer.models.encoder.state_dict()
    for key in before:  # the epoch-end pass had already recalibrated: a second one agrees
        torch.testing.assert_close(after[key], before[key], rtol=0, atol=1e-6)
    mean, _ = _first_bn_statistics(trainer)
    torch.testing.assert_close(trainer.models.encoder.stem[1].running_mean, mean, rtol=1e-4, atol=1e-5)
