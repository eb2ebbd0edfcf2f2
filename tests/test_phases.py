"""Each phase of the training loop alone: built from only what it reads (a Setup, the models it
uses, a Progress holding its inputs), run once, checked on what it writes and returns."""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import MICRO

from diffaug_genomics.config import resolve_config
from diffaug_genomics.diffusion import Diffusion
from diffaug_genomics.modalities.base import build_head
from diffaug_genomics.modalities.registry import get_modality
from diffaug_genomics.run_files import BANK_FORMAT
from diffaug_genomics.symmetry import discover
from diffaug_genomics.train import checkpoint as ckpt
from diffaug_genomics.train.bank import refresh_bank
from diffaug_genomics.train.build import make_setup
from diffaug_genomics.train.distributed import SINGLE
from diffaug_genomics.train.encoder_phase import encoder_epoch, find_neighbours
from diffaug_genomics.train.export import ExportChoice
from diffaug_genomics.train.generator_phase import generator_block
from diffaug_genomics.train.run_diagnostics import encoder_diagnostics, generator_diagnostics
from diffaug_genomics.train.schedule import Stage
from diffaug_genomics.train.state import Models, Progress

DNA = get_modality("dna")


def setup_for(rows: np.ndarray, run_dir: Path, should_stop=None, overrides=()):  # noqa: ANN001, ANN201
    cfg = resolve_config("tiny", overrides=[*MICRO, *overrides])
    for folder in (run_dir, run_dir / "cache", run_dir / "checkpoints"):
        folder.mkdir(parents=True, exist_ok=True)
    return make_setup(cfg, DNA, rows, run_dir, torch.device("cpu"), SINGLE, "fp32",
                      should_stop or (lambda: False))


def encoder_models(setup) -> Models:  # noqa: ANN001
    torch.manual_seed(0)
    encoder = DNA.build_encoder(setup.cfg, setup.sample_shape)
    head = build_head(setup.cfg, setup.cfg.encoder.embed_dim)
    params = [*encoder.parameters(), *head.parameters()]
    return Models(encoder=encoder, head=head, enc_params=params, encode=encoder,
                  enc_opt=torch.optim.AdamW(params, lr=setup.cfg.optim.lr))


def with_generator(setup, models: Models) -> Models:  # noqa: ANN001
    cfg = setup.cfg
    models.diffusion = Diffusion.from_config(cfg.generator)
    models.denoiser = DNA.build_denoiser(cfg, setup.sample_shape, cfg.encoder.embed_dim)
    models.ema = copy.deepcopy(models.denoiser).requires_grad_(False)
    models.gen_opt = torch.optim.AdamW(models.denoiser.parameters(), lr=cfg.generator.lr)
    models.denoise = models.sample_with = models.denoiser
    return models


def fresh_progress(setup) -> Progress:  # noqa: ANN001
    symmetry = discover(None, setup.rows, setup.cfg.symmetry, setup.cfg.seed)
    return Progress(symmetry=symmetry, export=ExportChoice("best", "eff_rank"))


def metrics_rows(setup) -> list[dict[str, str]]:  # noqa: ANN001
    with open(setup.paths.metrics, newline="") as fh:
        return list(csv.DictReader(fh))


def test_neighbours_are_searched_once_then_read_from_the_cache(example_rows, tmp_path):
    setup = setup_for(example_rows, tmp_path)
    encoder = encoder_models(setup).encoder
    found = find_neighbours(setup, encoder, "kmer")
    assert found.shape == (len(example_rows), setup.cfg.knn.k)
    assert not (found == np.arange(len(example_rows))[:, None]).any()  # never a row itself
    assert setup.paths.neighbours("kmer").is_file()
    setup.modality = None  # a second search would need the modality's features
    np.testing.assert_array_equal(find_neighbours(setup, encoder, "kmer"), found)


def test_an_encoder_epoch_trains_and_resumes_bit_for_bit(example_rows, tmp_path):
    """One warm-up epoch: every step taken, weights changed, loss rows logged; stopped after
    its second step and continued from the Progress it left, the same weights."""
    setup = setup_for(example_rows, tmp_path / "a")
    models, progress = encoder_models(setup), fresh_progress(setup)
    progress.neighbours = find_neighbours(setup, models.encoder, "kmer")
    start = copy.deepcopy(models.encoder.state_dict())
    stage = Stage("warmup", 0, 1)
    end = encoder_epoch(setup, models, progress, stage, seed=7)
    assert not end.interrupted and np.isfinite(end.loss)
    assert progress.enc_step == progress.step_in_unit == setup.steps_per_epoch == 4
    assert [r["phase"] for r in metrics_rows(setup)] == ["warmup"] * 4  # log_every=1
    assert any(not torch.equal(v, start[k]) for k, v in models.encoder.state_dict().items())

    polls = {"n": 0}

    def stop_after_two() -> bool:
        polls["n"] += 1
        return polls["n"] == 2

    other = setup_for(example_rows, tmp_path / "b", should_stop=stop_after_two)
    models2, progress2 = encoder_models(other), fresh_progress(other)
    progress2.neighbours = progress.neighbours
    first = encoder_epoch(other, models2, progress2, stage, seed=7)
    assert first.interrupted and progress2.step_in_unit == 2
    assert progress2.unit_gen_state is not None
    rest = encoder_epoch(other, models2, progress2, stage, seed=7)
    assert not rest.interrupted and progress2.enc_step == 4
    for key, value in models.encoder.state_dict().items():
        assert torch.equal(models2.encoder.state_dict()[key], value), key


def test_a_generator_block_trains_the_denoiser_and_its_ema(example_rows, tmp_path):
    setup = setup_for(example_rows, tmp_path)
    models, progress = with_generator(setup, encoder_models(setup)), fresh_progress(setup)
    progress.cond = torch.randn(len(example_rows), setup.cfg.encoder.embed_dim)
    ema_before = copy.deepcopy(models.ema.state_dict())
    end = generator_block(setup, models, progress, Stage("generator", 1, 2), seed=3)
    steps = setup.cfg.generator.steps_per_checkpoint
    assert not end.interrupted and np.isfinite(end.loss)
    assert progress.gen_step == progress.step_in_unit == steps
    assert [r["phase"] for r in metrics_rows(setup)] == ["generator"] * steps
    ema = models.ema.state_dict()
    assert any(not torch.equal(v, ema_before[k]) for k, v in ema.items())
    # the EMA restarts at the stage's first step and then trails the denoiser
    assert any(not torch.equal(v, models.denoiser.state_dict()[k]) for k, v in ema.items()
               if v.is_floating_point())
    gain = generator_diagnostics(setup, models, progress, Stage("generator", 1, 2))
    assert np.isfinite(gain) and metrics_rows(setup)[-1]["cond_gain"] != ""


def test_a_bank_refresh_fills_the_bank_and_saves_it(example_rows, tmp_path):
    setup = setup_for(example_rows, tmp_path, overrides=["bank.per_sequence=2"])
    models, progress = with_generator(setup, encoder_models(setup)), fresh_progress(setup)
    progress.cond = torch.randn(len(example_rows), setup.cfg.encoder.embed_dim)
    seconds = refresh_bank(setup, models, progress, Stage("bank", 1, 1), seed=5)
    assert seconds > 0
    assert progress.bank.shape == (len(example_rows), 2, 4, 200)
    assert progress.bank.dtype == torch.float16
    saved = ckpt.load(setup.paths.bank, BANK_FORMAT)
    assert saved["round"] == 1 and torch.equal(saved["bank"], progress.bank)
    row = metrics_rows(setup)[-1]
    assert row["phase"] == "bank" and row["loss"] == ""  # nothing to compare with in round 1
    assert 0 <= float(row["pos_identity_source"]) <= 1


def test_a_diagnostics_pass_scores_a_candidate_state(example_rows, tmp_path):
    setup = setup_for(example_rows, tmp_path)
    models, progress = encoder_models(setup), fresh_progress(setup)
    rank = encoder_diagnostics(setup, models, progress, "init", 0, -1)
    assert 1 <= rank <= setup.cfg.encoder.embed_dim
    assert set(progress.last_diagnostics) == {"eff_rank", "uniformity", "nbr_agreement",
                                              "feature_agreement"}
    assert progress.calibrated_at == progress.enc_step == 0
    row = metrics_rows(setup)[-1]
    assert row["phase"] == "init" and float(row["eff_rank"]) == pytest.approx(rank, abs=1e-4)
    assert row["nbr_agreement"] != ""
    encoder_diagnostics(setup, models, progress, "warmup", 0, 0, candidate=False)
    assert metrics_rows(setup)[-1]["nbr_agreement"] == ""  # only candidates are scored
