"""The bank of generated positives: refreshed once per round, saved, loaded, placed on a device."""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from diffaug_genomics.positives.generated import generated_positives
from diffaug_genomics.progress import LOG, progress
from diffaug_genomics.shards import shard_seed
from diffaug_genomics.train import checkpoint as ckpt
from diffaug_genomics.train import distributed as dist
from diffaug_genomics.train.bank_store import DiskBank, bank_on_disk, bank_output
from diffaug_genomics.train.schedule import Stage

BANK_DEVICE_SHARE = 0.25
"""On a GPU the bank of generated positives is kept in device memory when it takes at most this
share of the memory free after the bank refresh (else in host memory)."""


class BankPhase:
    """Part of :class:`~diffaug_genomics.train.loop.Trainer`: the bank refresh (uses its EMA
    denoiser, diffusion, conditions and run paths)."""

    def _refresh_bank(self, stage: Stage, seed: int) -> float:
        """Generate one positive per training sample with the EMA denoiser (no resume inside:
        a refresh is one unit, redone whole if interrupted).

        Distributed: rank ``r`` generates rows ``ctx.shard(N)`` with a generator seeded by
        :func:`shard_seed` ``(seed, r, W)``, then every rank gathers the whole bank. The bank is
        then the same on every rank and for every run with that world size, but not the same
        draws as a single process makes."""
        b = self.cfg.bank
        gen_seed = seed if not self.ctx.distributed else shard_seed(seed, self.ctx.rank,
                                                                    self.ctx.world_size)
        gen = torch.Generator().manual_seed(gen_seed)
        self.ema.eval()
        lo, hi = self.ctx.shard(self.n)
        shape = (hi - lo, b.per_sequence, *self.sample_shape)
        on_disk = self._bank_on_disk()
        t = time.perf_counter()
        with progress(f"bank refresh (round {stage.round})", total=hi - lo, unit="seq",
                      enabled=self.ctx.is_main) as bar, \
                bank_output(on_disk, self.paths.bank_file, shape,
                            self._load_bank() if on_disk and stage.round > 1
                            and self.paths.bank_file.exists() else None) as out:
            for start in range(lo, hi, b.batch_size):
                idx = np.arange(start, min(start + b.batch_size, hi))
                x = self._x(idx)
                sample = generated_positives(
                    self.diffusion, self._sample_with, self.modality, b, x,
                    self.cond[start:start + len(idx)], b.per_sequence, steps=b.steps,
                    strength=b.strength, guidance_scale=b.guidance_scale, generator=gen)
                sample = self.modality.from_diffusion(sample)
                if b.discrete:
                    sample = self.modality.to_discrete(sample)
                out[start - lo:start - lo + len(idx)] = sample.view(
                    len(idx), b.per_sequence, *self.sample_shape).cpu().half()
                bar.advance(len(idx))
        if on_disk:
            seconds, changed = time.perf_counter() - t, out.changed
            self.bank = None  # the last round's bank leaves the GPU before placing this one
            self.bank = self._place_bank(self._load_bank())
        else:
            seconds, changed = self._keep_bank(out, stage, t)
        stats = self._bank_diagnostics()
        LOG.info("bank refreshed: %d positives in %.1f s (%.2f s per 1000); changed vs previous "
                 "round: %s%s", self.n, seconds, 1000 * seconds / self.n,
                 "n/a" if math.isnan(changed) else f"{changed:.3f}",
                 "".join(f"; {k} {v:.3f}" for k, v in stats.items()))
        self._log_metric("bank", stage.round, 0, self.gen_step, changed, 0.0, self.n / seconds,
                         **stats)
        return seconds

    def _keep_bank(self, out: torch.Tensor, stage: Stage, t: float) -> tuple[float, float]:
        """A bank refreshed in memory: gathered from the ranks, saved, compared with the
        previous round's, placed. Returns (seconds since ``t``, fraction changed)."""
        out = dist.all_gather_rows(out, self.ctx, self.n)
        previous = self.bank
        if previous is None and stage.round > 1 and self.paths.bank.exists():  # resumed run
            previous = self._load_bank()
        if self.ctx.is_main:
            ckpt.save_atomic({"format": "diffaug-genomics/bank/1", "round": stage.round,
                              "bank": out}, self.paths.bank)
        seconds = time.perf_counter() - t
        changed = float("nan") if previous is None else float(
            (previous.to(out.device) != out).float().mean())
        previous = self.bank = None  # the last round's bank leaves the GPU before placing this one
        self.bank = self._place_bank(out)
        return seconds, changed

    def _bank_on_disk(self) -> bool:
        """Whether this run's bank lives in ``cache/bank.npy`` (:mod:`.bank_store`)."""
        return bank_on_disk(self.n, self.cfg.bank.per_sequence, self.sample_shape,
                            self.ctx.distributed)

    def _place_bank(self, bank: torch.Tensor | DiskBank) -> torch.Tensor | DiskBank:
        """The bank in GPU memory when the device is CUDA and it takes at most
        :data:`BANK_DEVICE_SHARE` of the free memory (what the driver has free plus what
        PyTorch's allocator holds unused), else in host memory (pinned), or left in its file
        (a :class:`~.bank_store.DiskBank`)."""
        if self.device.type != "cuda":
            return bank
        size = 2 * math.prod(bank.shape)
        free = torch.cuda.mem_get_info(self.device)[0] + (
            torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device))
        if size <= BANK_DEVICE_SHARE * free:
            LOG.log(self._info, "bank of positives on %s: %.1f MiB", self.device, size / 2**20)
            return bank.to(self.device)
        LOG.log(self._info, "bank of positives in %s: %.1f MiB (%.1f MiB free on %s)",
                "its file" if isinstance(bank, DiskBank) else "host memory", size / 2**20,
                free / 2**20, self.device)
        return bank if isinstance(bank, DiskBank) else bank.pin_memory()

    def _load_bank(self) -> torch.Tensor | DiskBank:
        """The saved bank, ``(N, per_sequence, *sample_shape)`` float16 (a bank written
        before ``bank.per_sequence`` existed, ``(N, *sample_shape)``, gains the draw axis);
        a bank too large for host memory stays in its file (:class:`~.bank_store.DiskBank`)."""
        if self._bank_on_disk():
            return DiskBank(self.paths.bank_file,
                            (self.n, self.cfg.bank.per_sequence, *self.sample_shape))
        bank = ckpt.load(self.paths.bank, "diffaug-genomics/bank/1")["bank"]
        return bank.unsqueeze(1) if bank.dim() == len(self.sample_shape) + 1 else bank
