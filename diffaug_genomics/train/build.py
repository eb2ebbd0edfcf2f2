"""Everything that exists before a run's first step: its :class:`~.state.Setup` (sizes,
schedule, diagnostic rows), the symmetry measured on the rows, the encoder's data-dependent
start, and the models and optimisers (:class:`~.state.Models`).

The order is the run's random stream: :func:`build_models` seeds torch with ``cfg.seed``, then
initialises the encoder, the head and the denoiser in that order, so a run and its resumed
continuation build the same weights before the checkpoint replaces them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from diffaug_genomics.config import Config
from diffaug_genomics.diagnostics import diagnostic_sample
from diffaug_genomics.modalities.base import Modality, build_head
from diffaug_genomics.progress import LOG
from diffaug_genomics.run_files import RunPaths
from diffaug_genomics.symmetry import SymmetryReport
from diffaug_genomics.train import distributed as dist
from diffaug_genomics.train.compiled import maybe_compile
from diffaug_genomics.train.distributed import DistContext
from diffaug_genomics.train.metrics_file import MetricsFile
from diffaug_genomics.train.precision import wrap
from diffaug_genomics.train.schedule import plan
from diffaug_genomics.train.state import Models, Setup

FIT_INIT_ROWS = 16384
"""Most training rows an encoder's data-dependent initialisation (``fit_init``) reads (a PCA
start from 10,000 DHS rows probes 1.4 points above one from 4,096: selection.md)."""


def make_setup(cfg: Config, modality: Modality, rows: np.ndarray, run_dir: Path,
               device: torch.device, ctx: DistContext, precision: str,
               should_stop: Callable[[], bool]) -> Setup:
    """The run's fixed context: sample shape, schedule, per-rank and global batch, steps per
    epoch and in all, the diagnostic rows, the ``metrics.csv`` writer."""
    n = len(rows)
    if n < ctx.world_size:
        from diffaug_genomics.errors import InputError

        raise InputError(f"{n} samples cannot be split over {ctx.world_size} ranks")
    stages = plan(cfg)
    batch = min(cfg.optim.batch_size, n // ctx.world_size)  # per rank
    steps_per_epoch = max(1, n // (batch * ctx.world_size))
    total_epochs = sum(s.units for s in stages if s.kind in ("warmup", "encoder"))
    paths = RunPaths(Path(run_dir))
    return Setup(cfg=cfg, modality=modality, rows=rows, paths=paths, device=device, ctx=ctx,
                 precision=precision, sample_shape=tuple(modality.to_model(rows[:1]).shape[1:]),
                 stages=stages, batch=batch, global_batch=batch * ctx.world_size,
                 steps_per_epoch=steps_per_epoch,
                 total_enc_steps=max(1, total_epochs * steps_per_epoch),
                 diag_idx=diagnostic_sample(n, cfg.seed),
                 metrics=MetricsFile(paths.metrics, ctx.is_main), should_stop=should_stop)


def discover_symmetry(setup: Setup, encoder: nn.Module) -> SymmetryReport:
    """Measure which of the modality's candidate transforms the training rows obey
    (:func:`~diffaug_genomics.symmetry.discover`; deterministic, so a resumed run finds the
    same) and give the accepted group to an encoder that averages over one
    (``set_symmetry``)."""
    from diffaug_genomics.symmetry import discover

    symmetry = discover(setup.modality.symmetries, setup.rows, setup.cfg.symmetry,
                        setup.cfg.seed)
    LOG.log(setup.info, "%s", symmetry.summary())
    set_symmetry = getattr(encoder, "set_symmetry", None)
    if callable(set_symmetry) and len(symmetry.group) > 1:
        set_symmetry(symmetry.group)
    return symmetry


def fit_init(setup: Setup, encoder: nn.Module) -> None:
    """Data-dependent initialisation of an encoder that has one (``fit_init(x)``, e.g. the
    spectrum encoder's feature statistics and PCA directions), from a fixed, seeded sample of
    up to :data:`FIT_INIT_ROWS` training rows. Deterministic, so a resumed run recomputes
    the same values before its checkpoint replaces them."""
    init = getattr(encoder, "fit_init", None)
    if callable(init):
        init(setup.x(np.sort(diagnostic_sample(setup.n, setup.cfg.seed, FIT_INIT_ROWS))))
        record = getattr(encoder, "start_record", None)
        if record:
            LOG.log(setup.info, "start: %s", ", ".join(f"{k} {v}" for k, v in record.items()))


def build_models(setup: Setup) -> tuple[Models, SymmetryReport]:
    """The models and optimisers of the run, seeded by ``cfg.seed``, and the symmetry found on
    its rows (between the encoder's random initialisation and its data-dependent start)."""
    cfg, device, ctx = setup.cfg, setup.device, setup.ctx
    torch.manual_seed(cfg.seed)
    encoder = setup.modality.build_encoder(cfg, setup.sample_shape).to(device)
    symmetry = discover_symmetry(setup, encoder)
    fit_init(setup, encoder)
    head = build_head(cfg, cfg.encoder.embed_dim).to(device)
    if ctx.distributed:
        _sync_batchnorm(setup, encoder, head)
    params = list(encoder.parameters()) + list(head.parameters())
    models = Models(encoder=encoder, head=head, enc_params=params,
                    enc_opt=torch.optim.AdamW(params, lr=cfg.optim.lr,
                                              weight_decay=cfg.optim.weight_decay),
                    encode=maybe_compile(encoder, cfg.compile, "encoder"))
    if cfg.augment == "diffaug":
        from diffaug_genomics.diffusion import Diffusion

        models.diffusion = Diffusion.from_config(cfg.generator).to(device)
        models.denoiser = setup.modality.build_denoiser(cfg, setup.sample_shape,
                                                        cfg.encoder.embed_dim).to(device)
        models.ema = copy.deepcopy(models.denoiser).requires_grad_(False)
        models.gen_opt = torch.optim.AdamW(models.denoiser.parameters(), lr=cfg.generator.lr,
                                           weight_decay=0.0)
    if cfg.augment == "handcrafted":
        models.handcrafted = setup.modality.build_handcrafted(cfg)
    # the forward passes of training and sampling: compiled if asked, autocast if bf16
    if models.denoiser is not None:
        models.denoise = wrap(maybe_compile(models.denoiser, cfg.compile, "denoiser"), device,
                              setup.precision)
        models.sample_with = wrap(maybe_compile(models.ema, cfg.compile, "EMA denoiser"),
                                  device, setup.precision)
    if ctx.distributed:  # rank 0's initial weights on every rank (equal already: seeded alike)
        for module in (models.encoder, models.head, models.denoiser, models.ema):
            if module is not None:
                dist.broadcast_parameters(module)
    return models, symmetry


def _sync_batchnorm(setup: Setup, encoder: nn.Module, head: nn.Module) -> None:
    """Batch norm over the global batch in the encoder and head (before the optimiser)."""
    from diffaug_genomics.train.sync_bn import convert_sync_batchnorm

    convert_sync_batchnorm(encoder, setup.device)
    convert_sync_batchnorm(head, setup.device)
