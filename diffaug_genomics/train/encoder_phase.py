"""The encoder phase: kNN neighbours, the positives of a batch, the contrastive loss, an epoch.

In the warm-up the positive of each sequence is a kNN-mixup of it with one of its neighbours;
in a DiffAug encoder stage a generated positive from the bank replaces it (``bank.fraction``),
mapped by a random element of the symmetry group discovered on the training rows (none drawn
when no symmetry was accepted); the handcrafted baseline augments both views.

Reads: the rows, the encoder, head and their optimiser, ``progress.neighbours``,
``progress.bank``, ``progress.symmetry``. Writes: the encoder's and head's weights, the
optimiser, the step counters, ``metrics.csv`` rows; :func:`find_neighbours` writes
``cache/neighbours-*.npz``.
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
from diffaug_genomics.train.state import Models, Progress, Setup, UnitEnd


def neighbours_tag(setup: Setup, stage: Stage) -> str | None:
    """Which neighbours ``stage`` mixes with: the ``knn.space`` (``embedding-r{round}`` for
    ``knn.space = embedding``, recomputed per round); None for the handcrafted baseline."""
    if setup.cfg.augment == "handcrafted":
        return None
    space = setup.cfg.knn.space
    return f"{space}-r{stage.round}" if space == "embedding" else space


def find_neighbours(setup: Setup, encoder: torch.nn.Module, tag: str) -> np.ndarray:
    """kNN indices ``(N, k)`` of every row in the space of ``tag``, from the run's cache when it
    holds them for these rows and settings, else searched and cached. Rank 0 decides and
    searches, every rank gets them (the embeddings are a collective)."""
    from diffaug_genomics.positives.neighbour_search import find_neighbours as search
    from diffaug_genomics.positives.neighbour_search import (
        load_neighbours,
        save_neighbours,
        search_method,
    )

    cfg, n, ctx = setup.cfg, setup.n, setup.ctx
    space = cfg.knn.space
    meta = {"space": space, "k": cfg.knn.k, "n": n, "kmer_k": cfg.knn.kmer_k,
            "pca_dim": cfg.knn.pca_dim, "seed": cfg.seed, "data": rows_digest(setup.rows)}
    if search_method(n) != "exact":  # exact searches keep the caches they had
        meta["search"] = search_method(n)
    path = setup.paths.neighbours(tag)
    cached = load_neighbours(path, meta) if ctx.is_main and path.exists() else None
    if dist.any_rank(ctx.is_main and cached is None):  # rank 0 alone reads the cache
        t = time.perf_counter()
        feats = None
        if space == "embedding":
            feats = setup.embed_all(encoder).cpu().numpy()
            feats /= np.linalg.norm(feats, axis=1, keepdims=True) + 1e-12
        if ctx.is_main:
            if feats is None:
                feats = setup.modality.knn_features(setup.rows, cfg, cfg.seed)
            cached = search(feats, min(cfg.knn.k, n - 1), seed=cfg.seed,
                            device=str(setup.device))
            save_neighbours(path, cached, meta)
            LOG.info("neighbours (%s, k=%d, %s search) for %d samples in %.1f s", space,
                     cfg.knn.k, search_method(n), n, time.perf_counter() - t)
    if ctx.distributed:
        cached = dist.broadcast_array(cached if ctx.is_main else None)
    return cached


def bank_replaces_all(setup: Setup, progress: Progress, stage: Stage) -> bool:
    """Whether every positive of this stage's batches is a generated one
    (``bank.fraction = 1``: ``rand < 1`` always holds)."""
    return (stage.kind == "encoder" and progress.bank is not None
            and setup.cfg.augment == "diffaug" and setup.cfg.bank.fraction >= 1.0)


def positives(setup: Setup, models: Models, progress: Progress, stage: Stage,
              idx: np.ndarray, x: torch.Tensor, gen: torch.Generator
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(anchor view, positive view) of the rows ``idx`` (``x``: them in model layout on the
    device), by augmentation and stage; draws from ``gen``."""
    if models.handcrafted is not None:  # both views augmented, as in SimCLR / EvoAug
        return models.handcrafted(x, gen), models.handcrafted(x, gen)
    from diffaug_genomics.positives.knn import knn_mixup

    cfg, neighbours = setup.cfg, progress.neighbours
    pick = torch.randint(neighbours.shape[1], (len(idx),), generator=gen).numpy()
    if bank_replaces_all(setup, progress, stage):
        # every row's positive comes from the bank: skip the mixup, not its one draw per
        # row (knn_mixup's ``a``), so the random stream is the same as computing it
        torch.rand(len(idx), generator=gen)
        pos = x
    else:
        partner = setup.x(neighbours[idx, pick])
        pos = knn_mixup(x, partner, gen, (cfg.knn.alpha_min, cfg.knn.alpha_max))
    anchor = x
    if stage.kind == "encoder" and progress.bank is not None and cfg.augment == "diffaug":
        anchor, pos = _bank_views(setup, progress.bank, idx, x, pos, gen)
        if setup.modality.symmetries is not None:  # composed with a discovered symmetry
            from diffaug_genomics.symmetry import apply_random_elements

            pos = apply_random_elements(setup.modality.symmetries, progress.symmetry.group,
                                        pos, gen)
    return anchor, pos


def _bank_views(setup: Setup, bank: torch.Tensor, idx: np.ndarray, x: torch.Tensor,
                pos: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(anchor, positive) with generated positives from ``bank`` for a ``bank.fraction`` of the
    rows (with ``bank.both_views`` a second draw replaces the anchor too)."""
    b, device = setup.cfg.bank, setup.device
    anchor = x
    use_bank = torch.rand(len(idx), generator=gen) < b.fraction
    if not use_bank.any():
        return anchor, pos
    at = bank.device
    drawn = bank[torch.from_numpy(idx).to(at)]  # (B, per_sequence, ...)
    rows = torch.arange(len(idx))
    first = torch.zeros(len(idx), dtype=torch.long)
    if b.per_sequence > 1:  # one of the sample's generated positives, at random
        first = torch.randint(b.per_sequence, (len(idx),), generator=gen)
    mask = use_bank.to(device).view(-1, *([1] * (x.dim() - 1)))
    pos = torch.where(mask, drawn[rows.to(at), first.to(at)].to(
        device, torch.float32, non_blocking=True), pos)
    if b.both_views:  # a second, different draw replaces the source as anchor
        shift = 1 + torch.randint(b.per_sequence - 1, (len(idx),), generator=gen)
        other = drawn[rows.to(at), ((first + shift) % b.per_sequence).to(at)]
        anchor = torch.where(mask, other.to(device, torch.float32, non_blocking=True), x)
    return anchor, pos


def encoder_loss(setup: Setup, models: Models, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The contrastive loss of the views ``a`` and ``b`` (``loss.name``: soft or InfoNCE),
    float32; the forward pass in the run's precision."""
    from diffaug_genomics.losses import info_nce_loss, soft_contrastive_loss

    cfg = setup.cfg
    with autocast(setup.device, setup.precision):  # losses in float32 from here
        z = models.encode(torch.cat([a, b]))
        y = models.head(z)
    z, y = z.float(), y.float()
    n = len(a)
    if cfg.loss.name == "soft":
        return soft_contrastive_loss(z[:n], y[:n], y[n:], nu_z=cfg.loss.nu_z,
                                     nu_y=cfg.loss.nu_y, gather=setup.ctx.distributed)
    return info_nce_loss(y[:n], y[n:], temperature=cfg.loss.temperature,
                         gather=setup.ctx.distributed)


def encoder_lr(setup: Setup, enc_step: int) -> float:
    """The encoder's learning rate at step ``enc_step``: constant, or cosine to
    ``min_lr_ratio`` over the run's encoder steps."""
    o = setup.cfg.optim
    if o.lr_schedule == "constant":
        return o.lr
    frac = min(1.0, enc_step / setup.total_enc_steps)
    return o.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


def encoder_epoch(setup: Setup, models: Models, progress: Progress, stage: Stage,
                  seed: int) -> UnitEnd:
    """One epoch of encoder steps over a permutation of the rows (seeded by ``seed``), from
    ``progress.step_in_unit`` on; stops early, with the unit's state in ``progress``, when a
    stop is requested."""
    gen = progress.unit_generator(seed)
    perm = np.random.default_rng(seed).permutation(setup.n)
    models.encoder.train()
    models.head.train()
    losses, t, done = [], time.perf_counter(), 0
    for step in range(progress.step_in_unit, setup.steps_per_epoch):
        idx = perm[step * setup.global_batch:(step + 1) * setup.global_batch]
        x = setup.x(idx)
        a, b = positives(setup, models, progress, stage, idx, x, gen)
        a, b = setup.local(a), setup.local(b)
        lr = encoder_lr(setup, progress.enc_step)
        for group in models.enc_opt.param_groups:
            group["lr"] = lr
        loss = encoder_loss(setup, models, a, b)
        check_finite_loss(loss, stage.kind, progress.enc_step + 1)
        models.enc_opt.zero_grad(set_to_none=True)
        loss.backward()
        dist.average_gradients(models.enc_params)
        models.enc_opt.step()
        progress.enc_step += 1
        progress.step_in_unit = step + 1
        losses.append(dist.mean_over_ranks(loss))
        done += len(idx)
        if progress.enc_step % setup.cfg.log_every == 0:
            setup.metrics.log(stage.kind, stage.round, progress.unit_idx, progress.enc_step,
                              losses[-1], lr, done / (time.perf_counter() - t))
        if setup.poll_stop() and progress.step_in_unit < setup.steps_per_epoch:
            progress.unit_gen_state = gen.get_state()
            return UnitEnd(float("nan"), interrupted=True)
    return UnitEnd(float(np.mean(losses)) if losses else float("nan"))


def rows_digest(rows: np.ndarray) -> str:
    """Cheap identity of a dataset for caches: shape plus a hash of a strided sample of rows."""
    h = hashlib.sha256(str(rows.shape).encode())
    step = max(1, len(rows) // 256)
    h.update(np.ascontiguousarray(rows[::step]).tobytes())
    return h.hexdigest()[:16]
