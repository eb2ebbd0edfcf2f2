"""The encoder phase: kNN neighbours, the positives of a batch, the contrastive loss, an epoch.

In the warm-up the positive of each sequence is a kNN-mixup of it with one of its neighbours;
in a DiffAug encoder stage a generated positive from the bank replaces it (``bank.fraction``),
mapped by a random element of the symmetry group discovered on the training rows (none drawn
when no symmetry was accepted); the handcrafted baseline augments both views.
"""

from __future__ import annotations

import hashlib
import math
import time

import numpy as np
import torch

from diffaug_genomics.guards import check_finite_loss
from diffaug_genomics.progress import LOG
from diffaug_genomics.train import distributed as dist
from diffaug_genomics.train.precision import autocast
from diffaug_genomics.train.schedule import Stage


class EncoderPhase:
    """Part of :class:`~diffaug_genomics.train.loop.Trainer`: the encoder phase (uses its
    models, optimiser, data and unit helpers)."""

    def _ensure_neighbours(self, stage_idx: int) -> None:
        """kNN indices for kNN-mixup, cached in the run directory (recomputed per round for
        ``knn.space = embedding``)."""
        if self.cfg.augment == "handcrafted":
            return
        space = self.cfg.knn.space
        stage = self.stages[stage_idx]
        tag = f"{space}-r{stage.round}" if space == "embedding" else space
        if getattr(self, "_neigh_tag", None) == tag:
            return
        from diffaug_genomics.positives.knn import load_neighbours, save_neighbours
        from diffaug_genomics.positives.neighbour_search import find_neighbours, search_method

        meta = {"space": space, "k": self.cfg.knn.k, "n": self.n, "kmer_k": self.cfg.knn.kmer_k,
                "pca_dim": self.cfg.knn.pca_dim, "seed": self.cfg.seed,
                "data": _rows_digest(self.rows)}
        if search_method(self.n) != "exact":  # exact searches keep the caches they had
            meta["search"] = search_method(self.n)
        path = self.paths.neighbours(tag)
        # rank 0 decides (cache or search) and broadcasts; the embeddings are a collective
        cached = load_neighbours(path, meta) if self.ctx.is_main and path.exists() else None
        need = dist.any_rank(cached is None)
        if need:
            t = time.perf_counter()
            feats = None
            if space == "embedding":
                feats = self._embed_all(self.encoder).cpu().numpy()
                feats /= np.linalg.norm(feats, axis=1, keepdims=True) + 1e-12
            if self.ctx.is_main:
                if feats is None:
                    feats = self.modality.knn_features(self.rows, self.cfg, self.cfg.seed)
                cached = find_neighbours(feats, min(self.cfg.knn.k, self.n - 1),
                                         seed=self.cfg.seed, device=str(self.device))
                save_neighbours(path, cached, meta)
                LOG.info("neighbours (%s, k=%d, %s search) for %d samples in %.1f s", space,
                         self.cfg.knn.k, search_method(self.n), self.n, time.perf_counter() - t)
        if self.ctx.distributed:
            cached = dist.broadcast_array(cached if self.ctx.is_main else None)
        self.neighbours, self._neigh_tag = cached, tag

    def _positives(self, stage: Stage, idx: np.ndarray, x: torch.Tensor,
                   gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(anchor view, positive view) for a batch, by augmentation and stage."""
        if self.handcrafted is not None:  # both views augmented, as in SimCLR / EvoAug
            return self.handcrafted(x, gen), self.handcrafted(x, gen)
        from diffaug_genomics.positives.knn import knn_mixup

        k = self.neighbours.shape[1]
        pick = torch.randint(k, (len(idx),), generator=gen).numpy()
        if self._bank_replaces_all(stage):
            # every row's positive comes from the bank: skip the mixup, not its one draw per
            # row (knn_mixup's ``a``), so the random stream is the same as computing it
            torch.rand(len(idx), generator=gen)
            pos = x
        else:
            partner = self._x(self.neighbours[idx, pick])
            lo, hi = self.cfg.knn.alpha_min, self.cfg.knn.alpha_max
            pos = knn_mixup(x, partner, gen, (lo, hi))
        anchor = x
        if stage.kind == "encoder" and self.bank is not None and self.cfg.augment == "diffaug":
            b = self.cfg.bank
            use_bank = torch.rand(len(idx), generator=gen) < b.fraction
            if use_bank.any():
                at = self.bank.device
                bank = self.bank[torch.from_numpy(idx).to(at)]  # (B, per_sequence, ...)
                rows = torch.arange(len(idx))
                first = torch.zeros(len(idx), dtype=torch.long)
                if b.per_sequence > 1:  # one of the sample's generated positives, at random
                    first = torch.randint(b.per_sequence, (len(idx),), generator=gen)
                mask = use_bank.to(self.device).view(-1, *([1] * (x.dim() - 1)))
                pos = torch.where(mask, bank[rows.to(at), first.to(at)].to(
                    self.device, torch.float32, non_blocking=True), pos)
                if b.both_views:  # a second, different draw replaces the source as anchor
                    shift = 1 + torch.randint(b.per_sequence - 1, (len(idx),), generator=gen)
                    other = bank[rows.to(at), ((first + shift) % b.per_sequence).to(at)]
                    anchor = torch.where(mask, other.to(self.device, torch.float32,
                                                        non_blocking=True), x)
            if self.modality.symmetries is not None:  # composed with a discovered symmetry
                from diffaug_genomics.symmetry import apply_random_elements

                pos = apply_random_elements(self.modality.symmetries, self.symmetry.group, pos,
                                            gen)
        return anchor, pos

    def _bank_replaces_all(self, stage: Stage) -> bool:
        """Whether every positive of this stage's batches is a generated one
        (``bank.fraction = 1``: ``rand < 1`` always holds)."""
        return (stage.kind == "encoder" and self.bank is not None
                and self.cfg.augment == "diffaug" and self.cfg.bank.fraction >= 1.0)

    def _loss(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        from diffaug_genomics.losses import info_nce_loss, soft_contrastive_loss

        with autocast(self.device, self.precision):  # losses in float32 from here
            z = self._encode(torch.cat([a, b]))
            y = self.head(z)
        z, y = z.float(), y.float()
        n = len(a)
        if self.cfg.loss.name == "soft":
            return soft_contrastive_loss(z[:n], y[:n], y[n:], nu_z=self.cfg.loss.nu_z,
                                         nu_y=self.cfg.loss.nu_y, gather=self.ctx.distributed)
        return info_nce_loss(y[:n], y[n:], temperature=self.cfg.loss.temperature,
                             gather=self.ctx.distributed)

    def _enc_lr(self) -> float:
        o = self.cfg.optim
        if o.lr_schedule == "constant":
            return o.lr
        frac = min(1.0, self.enc_step / self.total_enc_steps)
        return o.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))

    def _encoder_epoch(self, stage: Stage, seed: int) -> float:
        gen = self._unit_generator(seed)
        perm = np.random.default_rng(seed).permutation(self.n)
        self.encoder.train()
        self.head.train()
        losses, t, done = [], time.perf_counter(), 0
        for step in range(self.step_in_unit, self.steps_per_epoch):
            idx = perm[step * self.global_batch:(step + 1) * self.global_batch]
            x = self._x(idx)
            a, b = self._positives(stage, idx, x, gen)
            a, b = self._local(a), self._local(b)
            lr = self._enc_lr()
            for group in self.enc_opt.param_groups:
                group["lr"] = lr
            loss = self._loss(a, b)
            check_finite_loss(loss, stage.kind, self.enc_step + 1)
            self.enc_opt.zero_grad(set_to_none=True)
            loss.backward()
            dist.average_gradients(self.enc_params)
            self.enc_opt.step()
            self.enc_step += 1
            self.step_in_unit = step + 1
            losses.append(dist.mean_over_ranks(loss))
            done += len(idx)
            if self.enc_step % self.cfg.log_every == 0:
                self._log_metric(stage.kind, stage.round, self.unit_idx, self.enc_step,
                                 losses[-1], lr, done / (time.perf_counter() - t))
            if self._poll_stop() and self.step_in_unit < self.steps_per_epoch:
                self._checkpoint_mid_unit(gen)
        return float(np.mean(losses)) if losses else float("nan")


def _rows_digest(rows: np.ndarray) -> str:
    """Cheap identity of a dataset for caches: shape plus a hash of a strided sample of rows."""
    h = hashlib.sha256(str(rows.shape).encode())
    step = max(1, len(rows) // 256)
    h.update(np.ascontiguousarray(rows[::step]).tobytes())
    return h.hexdigest()[:16]
