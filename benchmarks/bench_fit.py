"""Engine throughput on this machine: encoder phase, generator phase, bank refresh.

Prints samples/s for an encoder step and a generator step with the ``default`` preset's models
on 200 bp sequences, seconds per 1000 generated positives for DDIM with 10, 20 and 50 steps
against 1000-step ancestral DDPM (same batch), and the epoch time of training from the
HDF5-backed path against the same epoch from an in-memory tensor, and the share of a ``tiny``
run's time the label-free diagnostics (and batch-norm recalibration) add.

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
        for strength in (0.5,):
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

        share = diagnostics_overhead(Path(tmp))
        print(f"diagnostics     : {100 * share:.1f} % on top of a tiny run on the example "
              f"(500 x 200 bp; label-free diagnostics and batch-norm recalibration; target < 10 %)")


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
