"""The bank refresh: one generated positive per training row (or ``bank.per_sequence``), once
per round, saved, and placed on a device.

Reads: the rows, ``progress.cond``, the EMA denoiser and the diffusion, the previous bank.
Writes: ``progress.bank``, ``cache/bank.pt`` or ``cache/bank.npy`` (its format:
:mod:`diffaug_genomics.run_files`; which by size: :mod:`.bank_store`), a ``metrics.csv`` row.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from diffaug_genomics.positives.generated import generated_positives
from diffaug_genomics.progress import LOG
from diffaug_genomics.progress import progress as progress_bar
from diffaug_genomics.run_files import BANK_FORMAT, bank_from_record, bank_record
from diffaug_genomics.shards import shard_seed
from diffaug_genomics.train import checkpoint as ckpt
from diffaug_genomics.train import distributed as dist
from diffaug_genomics.train.bank_store import DiskBank, bank_on_disk, bank_output
from diffaug_genomics.train.run_diagnostics import bank_diagnostics
from diffaug_genomics.train.schedule import Stage
from diffaug_genomics.train.state import Models, Progress, Setup

BANK_DEVICE_SHARE = 0.25
"""On a GPU the bank of generated positives is kept in device memory when it takes at most this
share of the memory free after the bank refresh (else in host memory)."""


def refresh_bank(setup: Setup, models: Models, progress: Progress, stage: Stage,
                 seed: int) -> float:
    """Generate the bank with the EMA denoiser, conditioned on ``progress.cond``, into
    ``progress.bank``; returns the seconds it took (no resume inside: a refresh is one unit,
    redone whole if interrupted).

    Distributed: rank ``r`` generates rows ``ctx.shard(N)`` with a generator seeded by
    :func:`shard_seed` ``(seed, r, W)``, then every rank gathers the whole bank. The bank is
    then the same on every rank and for every run with that world size, but not the same
    draws as a single process makes."""
    b, ctx, paths = setup.cfg.bank, setup.ctx, setup.paths
    gen_seed = seed if not ctx.distributed else shard_seed(seed, ctx.rank, ctx.world_size)
    gen = torch.Generator().manual_seed(gen_seed)
    models.ema.eval()
    lo, hi = ctx.shard(setup.n)
    shape = (hi - lo, b.per_sequence, *setup.sample_shape)
    on_disk = _on_disk(setup)
    t = time.perf_counter()
    with progress_bar(f"bank refresh (round {stage.round})", total=hi - lo, unit="seq",
                      enabled=ctx.is_main) as bar, \
            bank_output(on_disk, paths.bank_file, shape,
                        load_bank(setup) if on_disk and stage.round > 1
                        and paths.bank_file.exists() else None) as out:
        for start in range(lo, hi, b.batch_size):
            idx = np.arange(start, min(start + b.batch_size, hi))
            x = setup.x(idx)
            sample = generated_positives(
                models.diffusion, models.sample_with, b, setup.modality.to_diffusion(x),
                progress.cond[start:start + len(idx)], b.per_sequence, steps=b.steps,
                strength=b.strength, guidance_scale=b.guidance_scale, generator=gen,
                clip_x0=setup.modality.clip_x0)
            sample = setup.modality.from_diffusion(sample)
            if b.discrete:
                sample = setup.modality.to_discrete(sample)
            out[start - lo:start - lo + len(idx)] = sample.view(
                len(idx), b.per_sequence, *setup.sample_shape).cpu().half()
            bar.advance(len(idx))
    if on_disk:
        seconds, changed = time.perf_counter() - t, out.changed
        progress.bank = None  # the last round's bank leaves the GPU before placing this one
        progress.bank = place_bank(setup, load_bank(setup))
    else:
        seconds, changed = _keep_bank(setup, progress, out, stage, t)
    stats = bank_diagnostics(setup, progress)
    LOG.info("bank refreshed: %d positives in %.1f s (%.2f s per 1000); changed vs previous "
             "round: %s%s", setup.n, seconds, 1000 * seconds / setup.n,
             "n/a" if math.isnan(changed) else f"{changed:.3f}",
             "".join(f"; {k} {v:.3f}" for k, v in stats.items()))
    setup.metrics.log("bank", stage.round, 0, progress.gen_step, changed, 0.0,
                      setup.n / seconds, **stats)
    return seconds


def _keep_bank(setup: Setup, progress: Progress, out: torch.Tensor, stage: Stage,
               t: float) -> tuple[float, float]:
    """A bank refreshed in memory: gathered from the ranks, saved, compared with the
    previous round's, placed. Returns (seconds since ``t``, fraction changed)."""
    out = dist.all_gather_rows(out, setup.ctx, setup.n)
    previous = progress.bank
    if previous is None and stage.round > 1 and setup.paths.bank.exists():  # resumed run
        previous = load_bank(setup)
    if setup.ctx.is_main:
        ckpt.save_atomic(bank_record(stage.round, out), setup.paths.bank)
    seconds = time.perf_counter() - t
    changed = float("nan") if previous is None else float(
        (previous.to(out.device) != out).float().mean())
    previous = progress.bank = None  # the last round's bank leaves the GPU before placing this
    progress.bank = place_bank(setup, out)
    return seconds, changed


def _on_disk(setup: Setup) -> bool:
    """Whether this run's bank lives in ``cache/bank.npy`` (:mod:`.bank_store`)."""
    return bank_on_disk(setup.n, setup.cfg.bank.per_sequence, setup.sample_shape,
                        setup.ctx.distributed)


def place_bank(setup: Setup, bank: torch.Tensor | DiskBank) -> torch.Tensor | DiskBank:
    """The bank in GPU memory when the device is CUDA and it takes at most
    :data:`BANK_DEVICE_SHARE` of the free memory (what the driver has free plus what
    PyTorch's allocator holds unused), else in host memory (pinned), or left in its file
    (a :class:`~.bank_store.DiskBank`)."""
    device = setup.device
    if device.type != "cuda":
        return bank
    size = 2 * math.prod(bank.shape)
    free = torch.cuda.mem_get_info(device)[0] + (
        torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    if size <= BANK_DEVICE_SHARE * free:
        LOG.log(setup.info, "bank of positives on %s: %.1f MiB", device, size / 2**20)
        return bank.to(device)
    LOG.log(setup.info, "bank of positives in %s: %.1f MiB (%.1f MiB free on %s)",
            "its file" if isinstance(bank, DiskBank) else "host memory", size / 2**20,
            free / 2**20, device)
    return bank if isinstance(bank, DiskBank) else bank.pin_memory()


def load_bank(setup: Setup) -> torch.Tensor | DiskBank:
    """The saved bank, ``(N, per_sequence, *sample_shape)`` float16; a bank too large for host
    memory stays in its file (:class:`~.bank_store.DiskBank`)."""
    if _on_disk(setup):
        return DiskBank(setup.paths.bank_file,
                        (setup.n, setup.cfg.bank.per_sequence, *setup.sample_shape))
    record = ckpt.load(setup.paths.bank, BANK_FORMAT)
    return bank_from_record(record, setup.sample_shape)
