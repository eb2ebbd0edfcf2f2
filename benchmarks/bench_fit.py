"""Engine throughput on this machine: encoder phase, generator phase, bank refresh.

Prints samples/s for an encoder step and a generator step with the ``default`` preset's models
on 200 bp sequences, seconds per 1000 generated positives for DDIM with 10, 20 and 50 steps
against 1000-step ancestral DDPM (same batch), and the epoch time of training from the
HDF5-backed path against the same epoch from an in-memory tensor, the loop overhead (the
project's encoder and generator phases against a bare PyTorch loop with the same models and
data: :func:`loop_overhead`), and the share of a ``tiny`` run's time the label-free diagnostics
(and batch-norm recalibration) add.

    make bench-fit            # or: python benchmarks/bench_fit.py --threads 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from diffaug_genomics.alphabet import one_hot
from diffaug_genomics.config import resolve_config
from diffaug_genomics.diffusion import Diffusion
from diffaug_genomics.inputs import load_rows
from diffaug_genomics.io.h5 import OneHotWriter
from diffaug_genomics.models.registry import get_modality
from diffaug_genomics.train.loop import Trainer

EXAMPLE = Path(__file__).resolve().parent.parent / "resources" / "examples" / "dhs_example.fa"


def example_rows(n: int) -> np.ndarray:
    seqs = [s.strip() for s in EXAMPLE.read_text().splitlines() if s and s[0] != ">"]
    rows = np.stack([one_hot(s) for s in seqs])
    return rows[np.arange(n) % len(rows)]


def timed(fn, repeat: int) -> float:
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n", type=int, default=2048, help="sequences in the timing set")
    parser.add_argument("--sample-batch", type=int, default=64)
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="a config override on top of the default preset, e.g. "
                             "encoder.backbone=conv1d (the earlier default encoder)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = ["schedule.rounds=0", "schedule.warmup_epochs=1", *args.overrides]
    cfg = resolve_config("default", overrides=base)
    rows = example_rows(args.n)
    dna = get_modality("dna")
    print(f"torch {torch.__version__}, {args.threads} threads, {args.n} x 200 bp, default preset "
          f"(encoder {cfg.encoder.backbone}){' with ' + ' '.join(args.overrides) if args.overrides else ''}")

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        (run / "checkpoints").mkdir()
        (run / "cache").mkdir()
        trainer = Trainer(cfg, dna, rows, run, torch.device("cpu"))
        trainer._ensure_neighbours(0)
        stage = trainer.stages[0]
        gen = torch.Generator().manual_seed(0)
        idx = np.arange(cfg.optim.batch_size)

        def enc_step() -> None:
            x = trainer._x(idx)
            a, b = trainer._positives(stage, idx, x, gen)
            loss = trainer._loss(a, b)
            trainer.enc_opt.zero_grad()
            loss.backward()
            trainer.enc_opt.step()

        s = timed(enc_step, 5)
        print(f"encoder phase   : {cfg.optim.batch_size / s:8.1f} pairs/s  ({s:.3f} s per step of {cfg.optim.batch_size})")

        denoiser = dna.build_denoiser(cfg, (4, 200), cfg.encoder.embed_dim)
        g = cfg.generator
        diffusion = Diffusion(g.num_train_timesteps, g.beta_schedule, g.prediction_type)
        opt = torch.optim.AdamW(denoiser.parameters(), lr=g.lr)
        cond = torch.randn(g.batch_size, cfg.encoder.embed_dim)
        x0 = dna.to_diffusion(dna.to_model(rows[: g.batch_size]))

        def gen_step() -> None:
            loss = diffusion.loss(denoiser, x0, cond, p_uncond=g.cond_dropout, generator=gen)
            opt.zero_grad()
            loss.backward()
            opt.step()

        s = timed(gen_step, 5)
        print(f"generator phase : {g.batch_size / s:8.1f} samples/s ({s:.3f} s per step of {g.batch_size})")

        denoiser.eval()
        b = args.sample_batch
        xs = dna.to_diffusion(dna.to_model(rows[:b]))
        cs = torch.randn(b, cfg.encoder.embed_dim)
        results = {}
        for name, kw in [("DDIM 10", dict(steps=10)), ("DDIM 20", dict(steps=20)),
                         ("DDIM 50", dict(steps=50)),
                         ("DDPM 1000", dict(steps=g.num_train_timesteps, sampler="ddpm"))]:
            t = time.perf_counter()
            diffusion.sample(denoiser, cs, tuple(xs.shape), generator=gen, guidance_scale=1.0,
                             **kw)
            results[name] = (time.perf_counter() - t) * 1000 / b
            print(f"bank refresh    : {name:9s} {results[name]:8.1f} s per 1000 sequences "
                  "(pure noise, no guidance)")
        for strength in (cfg.bank.strength,):
            t = time.perf_counter()
            diffusion.sample(denoiser, cs, tuple(xs.shape), steps=cfg.bank.steps, strength=strength,
                             x_init=xs, guidance_scale=cfg.bank.guidance_scale, generator=gen)
            per = (time.perf_counter() - t) * 1000 / b
            print(f"bank refresh    : default (DDIM {cfg.bank.steps}, SDEdit {strength}, guidance "
                  f"{cfg.bank.guidance_scale}) {per:.1f} s per 1000 sequences")
        print(f"speed-up DDIM 50 vs DDPM 1000: {results['DDPM 1000'] / results['DDIM 50']:.1f}x "
              "(target >= 15x)")

        # data path: one epoch from the HDF5 file (loaded by the trainer) vs an in-memory tensor
        h5 = run / "data.h5"
        with OneHotWriter(h5, 200, {"policy": "center"}) as w:
            w.append(rows, [f"s{i}" for i in range(len(rows))], np.full(len(rows), 200))
        epoch_cfg = resolve_config("default", overrides=base)

        def epoch(from_h5: bool) -> float:
            t = time.perf_counter()
            data = load_rows(h5)[0] if from_h5 else rows
            d = Path(tempfile.mkdtemp(dir=tmp))
            (d / "checkpoints").mkdir()
            (d / "cache").mkdir()
            tr = Trainer(epoch_cfg, dna, data, d, torch.device("cpu"))
            tr._ensure_neighbours(0)
            tr._encoder_epoch(tr.stages[0], 0)
            return time.perf_counter() - t

        mem, disk = epoch(False), epoch(True)
        print(f"epoch time      : in-memory {mem:.2f} s, from HDF5 {disk:.2f} s "
              f"({100 * (disk / mem - 1):+.1f} %, target within 10 %)")

        enc_ratio, gen_ratio, detail = loop_overhead(rows, args.overrides, Path(tmp))
        print(f"loop overhead   : encoder phase {enc_ratio:.2f}x, generator phase {gen_ratio:.2f}x "
              f"a bare PyTorch loop (target within 1.10x); {detail}")

        share = diagnostics_overhead(Path(tmp))
        print(f"diagnostics     : {100 * share:.1f} % on top of a tiny run on the example "
              f"(500 x 200 bp; label-free diagnostics and batch-norm recalibration; target < 10 %)")


def loop_overhead(rows: np.ndarray, overrides: list[str], tmp: Path,
                  epochs: int = 2) -> tuple[float, float, str]:
    """Seconds per step of the project's encoder and generator phases (with everything a real
    run does per epoch or block: positives, metrics rows, diagnostics, checkpoints) divided by a
    bare loop's: the same encoder, head, loss, optimiser, batch and in-memory data, a plain
    ``for`` loop with precomputed positives and no checkpoint, log or bank. Returns both ratios
    and a line saying where the time goes."""
    from diffaug_genomics.losses import info_nce_loss
    from diffaug_genomics.models.registry import build_head
    from diffaug_genomics.train.loop import Stage

    cfg = resolve_config("default", overrides=[*overrides, "schedule.rounds=1"])
    dna = get_modality("dna")
    run = tmp / "overhead"
    (run / "checkpoints").mkdir(parents=True)
    (run / "cache").mkdir()
    trainer = Trainer(cfg, dna, rows, run, torch.device("cpu"))
    x_all = dna.to_model(rows)
    positives = x_all.roll(1, dims=-1)  # stand-in generated positives, the bank's layout
    trainer.bank = positives.unsqueeze(1).half()
    trainer._ensure_neighbours(0)
    trainer.cond = torch.randn(len(rows), cfg.encoder.embed_dim)
    steps = trainer.steps_per_epoch

    # the project: encoder epochs (positives from the bank), then generator blocks
    enc_stage, gen_stage = Stage("encoder", 1, epochs), Stage("generator", 1, epochs)
    split = {"epoch": 0.0, "diagnostics": 0.0, "checkpoint": 0.0}
    for e in range(epochs):
        t0 = time.perf_counter()
        trainer._encoder_epoch(enc_stage, e)
        t1 = time.perf_counter()
        trainer._encoder_diagnostics("encoder", 1, e)
        t2 = time.perf_counter()
        trainer.save_checkpoint()
        t3 = time.perf_counter()
        trainer.step_in_unit = 0
        split["epoch"] += t1 - t0
        split["diagnostics"] += t2 - t1
        split["checkpoint"] += t3 - t2
    project_enc = sum(split.values()) / (epochs * steps)
    g = cfg.generator
    block = min(g.steps_per_checkpoint, g.steps)
    t0 = time.perf_counter()
    for e in range(epochs):
        trainer._generator_block(gen_stage, e)
        trainer._generator_diagnostics(gen_stage)
        trainer.save_checkpoint()
        trainer.step_in_unit = 0
    project_gen = (time.perf_counter() - t0) / (epochs * block)

    # the bare loops
    torch.manual_seed(0)
    enc = dna.build_encoder(cfg, tuple(x_all.shape[1:]))
    if hasattr(enc, "fit_init"):
        enc.fit_init(x_all[:4096])
    head = build_head(cfg, cfg.encoder.embed_dim)
    opt = torch.optim.AdamW([*enc.parameters(), *head.parameters()], lr=cfg.optim.lr,
                            weight_decay=cfg.optim.weight_decay)
    batch = trainer.batch
    perm = torch.randperm(len(rows))
    t0 = time.perf_counter()
    for _ in range(epochs):
        for step in range(steps):
            idx = perm[step * batch:(step + 1) * batch]
            y = head(enc(torch.cat([x_all[idx], positives[idx]])))
            loss = info_nce_loss(y[:batch], y[batch:], temperature=cfg.loss.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    bare_enc = (time.perf_counter() - t0) / (epochs * steps)
    denoiser = dna.build_denoiser(cfg, tuple(x_all.shape[1:]), cfg.encoder.embed_dim)
    diffusion = Diffusion.from_config(g)
    gopt = torch.optim.AdamW(denoiser.parameters(), lr=g.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(0)
    x0_all = dna.to_diffusion(x_all)
    t0 = time.perf_counter()
    for _ in range(epochs * block):
        idx = torch.randint(len(rows), (min(g.batch_size, len(rows)),), generator=gen)
        loss = diffusion.loss(denoiser, x0_all[idx], trainer.cond[idx], p_uncond=g.cond_dropout,
                              generator=gen)
        gopt.zero_grad(set_to_none=True)
        loss.backward()
        gopt.step()
    bare_gen = (time.perf_counter() - t0) / (epochs * block)
    per_step = {k: 1000 * v / (epochs * steps) for k, v in split.items()}
    detail = (f"encoder ms per step: bare {1000 * bare_enc:.1f}, project "
              f"{per_step['epoch']:.1f} in the epoch + {per_step['diagnostics']:.1f} diagnostics + "
              f"{per_step['checkpoint']:.1f} checkpoint; generator ms per step: bare "
              f"{1000 * bare_gen:.1f}, project {1000 * project_gen:.1f}")
    return project_enc / bare_enc, project_gen / bare_gen, detail


def diagnostics_overhead(tmp: Path) -> float:
    """Share of a ``tiny`` run's time (the example, 500 x 200 bp) spent in the label-free
    diagnostics and the batch-norm recalibration passes, relative to the rest of the run: every
    method that computes them is timed in the same process."""
    spent = {"s": 0.0}
    originals = {name: getattr(Trainer, name) for name in
                 ("_sample_embeddings", "_generator_diagnostics", "_bank_diagnostics")}

    def timed_method(fn):  # noqa: ANN001, ANN202
        def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent["s"] += time.perf_counter() - t
        return wrapper

    rows = example_rows(500)
    cfg = resolve_config("tiny", seed=0)
    d = tmp / "diagnostics"
    (d / "checkpoints").mkdir(parents=True)
    (d / "cache").mkdir()
    try:
        for name, fn in originals.items():
            setattr(Trainer, name, timed_method(fn))
        t = time.perf_counter()
        Trainer(cfg, get_modality("dna"), rows, d, torch.device("cpu")).run()
        total = time.perf_counter() - t
    finally:
        for name, fn in originals.items():
            setattr(Trainer, name, fn)
    return spent["s"] / (total - spent["s"])


if __name__ == "__main__":
    main()
