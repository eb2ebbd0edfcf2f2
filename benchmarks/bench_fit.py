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
from diffaug_genomics.config import load_yaml, resolve_config
from diffaug_genomics.diffusion import Diffusion
from diffaug_genomics.io.h5 import load_rows
from diffaug_genomics.io.onehot_writer import OneHotWriter
from diffaug_genomics.modalities.registry import get_modality
from diffaug_genomics.train import bank as bank_phase
from diffaug_genomics.train import loop, run_diagnostics
from diffaug_genomics.train.bank import place_bank
from diffaug_genomics.train.encoder_phase import encoder_epoch, encoder_loss, positives
from diffaug_genomics.train.generator_phase import generator_block
from diffaug_genomics.train.loop import Trainer
from diffaug_genomics.train.precision import autocast, resolve_precision, wrap
from diffaug_genomics.train.run_diagnostics import encoder_diagnostics, generator_diagnostics

EXAMPLE = Path(__file__).resolve().parent.parent / "resources" / "examples" / "dhs_example.fa"


def example_rows(n: int) -> np.ndarray:
    seqs = [s.strip() for s in EXAMPLE.read_text().splitlines() if s and s[0] != ">"]
    rows = np.stack([one_hot(s) for s in seqs])
    return rows[np.arange(n) % len(rows)]


def timed(fn, repeat: int, device: torch.device | None = None) -> float:
    fn()  # warm-up
    sync(device or torch.device("cpu"))
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    sync(device or torch.device("cpu"))
    return (time.perf_counter() - t) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n", type=int, default=2048, help="sequences in the timing set")
    parser.add_argument("--overhead-n", type=int, default=10_000,
                        help="sequences for the loop overhead (the default run size)")
    parser.add_argument("--sample-batch", type=int, default=64)
    parser.add_argument("--device", default="cpu", help="cpu | cuda")
    parser.add_argument("--precision", default="auto", help="auto | fp32 | bf16")
    parser.add_argument("--compile-check", action="store_true",
                        help="also time a short fit end to end with and without --compile")
    parser.add_argument("--auto-check", action="store_true",
                        help="only: a short default fit in fp32, bf16 and auto (measuring, "
                             "then from the per-machine figures), CPU seconds of each")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="a config override on top of the default preset, e.g. "
                             "encoder.backbone=conv1d (the earlier default encoder)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    overrides = [f"precision={args.precision}", *args.overrides]
    base = ["schedule.rounds=0", "schedule.warmup_epochs=1", *overrides]
    cfg = resolve_config("default", overrides=base)
    rows = example_rows(args.n)
    if args.auto_check:
        for line in auto_precision_check(example_rows(args.overhead_n), args.overrides, device):
            print(f"precision auto  : {line}")
        return
    dna = get_modality("dna")
    precision = resolve_precision(cfg.precision, device)
    print(f"torch {torch.__version__}, {args.threads} threads, {device}, precision {precision} "
          f"({cfg.precision}), {args.n} x 200 bp, default preset (encoder {cfg.encoder.backbone})"
          f"{' with ' + ' '.join(args.overrides) if args.overrides else ''}")

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        (run / "checkpoints").mkdir()
        (run / "cache").mkdir()
        trainer = Trainer(cfg, dna, rows, run, device)
        trainer._prepare_stage(0)
        setup, models, progress = trainer.setup, trainer.models, trainer.progress
        stage = setup.stages[0]
        gen = torch.Generator().manual_seed(0)
        idx = np.arange(cfg.optim.batch_size)

        def enc_step() -> None:
            x = setup.x(idx)
            a, b = positives(setup, models, progress, stage, idx, x, gen)
            loss = encoder_loss(setup, models, a, b)
            models.enc_opt.zero_grad()
            loss.backward()
            models.enc_opt.step()

        s = timed(enc_step, 5, device)
        print(f"encoder phase   : {cfg.optim.batch_size / s:8.1f} pairs/s  ({s:.3f} s per step of {cfg.optim.batch_size})")

        denoiser = dna.build_denoiser(cfg, (4, 200), cfg.encoder.embed_dim).to(device)
        g = cfg.generator
        diffusion = Diffusion(g.num_train_timesteps, g.beta_schedule, g.prediction_type).to(device)
        opt = torch.optim.AdamW(denoiser.parameters(), lr=g.lr)
        cond = torch.randn(g.batch_size, cfg.encoder.embed_dim, device=device)
        x0 = dna.to_diffusion(dna.to_model(rows[: g.batch_size])).to(device)
        model = wrap(denoiser, device, precision)

        def gen_step() -> None:
            loss = diffusion.loss(model, x0, cond, p_uncond=g.cond_dropout)
            opt.zero_grad()
            loss.backward()
            opt.step()

        s = timed(gen_step, 5, device)
        print(f"generator phase : {g.batch_size / s:8.1f} samples/s ({s:.3f} s per step of {g.batch_size})")

        denoiser.eval()
        b = args.sample_batch
        xs = dna.to_diffusion(dna.to_model(rows[:b])).to(device)
        cs = torch.randn(b, cfg.encoder.embed_dim, device=device)
        results = {}
        for name, kw in [("DDIM 10", dict(steps=10)), ("DDIM 20", dict(steps=20)),
                         ("DDIM 50", dict(steps=50)),
                         ("DDPM 1000", dict(steps=g.num_train_timesteps, sampler="ddpm"))]:
            t = time.perf_counter()
            diffusion.sample(model, cs, tuple(xs.shape), guidance_scale=1.0, **kw)
            sync(device)
            results[name] = (time.perf_counter() - t) * 1000 / b
            print(f"bank refresh    : {name:9s} {results[name]:8.1f} s per 1000 sequences "
                  "(pure noise, no guidance)")
        for strength in (cfg.bank.strength,):
            t = time.perf_counter()
            diffusion.sample(model, cs, tuple(xs.shape), steps=cfg.bank.steps, strength=strength,
                             x_init=xs, guidance_scale=cfg.bank.guidance_scale)
            sync(device)
            per = (time.perf_counter() - t) * 1000 / b
            print(f"bank refresh    : default (DDIM {cfg.bank.steps}, SDEdit {strength}, guidance "
                  f"{cfg.bank.guidance_scale}) {per:.1f} s per 1000 sequences")
        print(f"speed-up DDIM 50 vs DDPM 1000: {results['DDPM 1000'] / results['DDIM 50']:.1f}x "
              "(target >= 15x)")

        for phase, (fp32, bf16) in precision_speedups(rows, cfg, device).items():
            print(f"bf16 vs fp32    : {phase:15s} {fp32 / bf16:.2f}x faster in bf16 "
                  f"({1000 * fp32:.1f} vs {1000 * bf16:.1f} ms)")

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
            tr = Trainer(epoch_cfg, dna, data, d, device)
            tr._prepare_stage(0)
            encoder_epoch(tr.setup, tr.models, tr.progress, tr.setup.stages[0], 0)
            sync(device)
            return time.perf_counter() - t

        mem, disk = epoch(False), epoch(True)
        print(f"epoch time      : in-memory {mem:.2f} s, from HDF5 {disk:.2f} s "
              f"({100 * (disk / mem - 1):+.1f} %, target within 10 %)")

        big = example_rows(args.overhead_n)
        enc_ratio, gen_ratio, detail = loop_overhead(big, overrides, Path(tmp), device)
        print(f"loop overhead   : encoder phase {enc_ratio:.2f}x, generator phase {gen_ratio:.2f}x "
              f"a bare PyTorch loop on {len(big)} x 200 bp (target within 1.10x); {detail}")

        share = diagnostics_overhead(Path(tmp), device)
        print(f"diagnostics     : {100 * share:.1f} % on top of a tiny run on the example "
              f"(500 x 200 bp; label-free diagnostics and batch-norm recalibration; target < 10 %)")

        for line in memory_per_batch(cfg):
            print(f"memory per step : {line}")

        if args.compile_check:
            eager, compiled = compile_end_to_end(big, overrides, Path(tmp), device)
            print(f"--compile       : a short default fit on {len(big)} x 200 bp, end to end "
                  f"with compile time: {eager:.1f} s eager, {compiled:.1f} s compiled "
                  f"({eager / compiled:.2f}x)")
        if device.type == "cuda":
            print(f"peak GPU memory : {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (timings on CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class BareModels:
    """The ``default`` preset's models outside the project's loop, for the reference
    measurements: the encoder (data-initialised from ``x``) with its head and AdamW, the
    denoiser with its AdamW and the diffusion, on ``device``; a plain step of each phase."""

    def __init__(self, cfg, x: torch.Tensor, device: torch.device) -> None:  # noqa: ANN001
        from diffaug_genomics.modalities.base import build_head

        dna = get_modality("dna")
        self.cfg, self.device = cfg, device
        torch.manual_seed(0)
        self.enc = dna.build_encoder(cfg, tuple(x.shape[1:])).to(device)
        if hasattr(self.enc, "fit_init"):
            self.enc.fit_init(x[:4096])
        self.head = build_head(cfg, cfg.encoder.embed_dim).to(device)
        self.opt = torch.optim.AdamW([*self.enc.parameters(), *self.head.parameters()],
                                     lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
        self.den = dna.build_denoiser(cfg, tuple(x.shape[1:]), cfg.encoder.embed_dim).to(device)
        self.gopt = torch.optim.AdamW(self.den.parameters(), lr=cfg.generator.lr,
                                      weight_decay=0.0)
        self.diffusion = Diffusion.from_config(cfg.generator).to(device)

    def encoder_loss(self, a: torch.Tensor, b: torch.Tensor, precision: str) -> torch.Tensor:
        from diffaug_genomics.losses import info_nce_loss

        with autocast(self.device, precision):
            y = self.head(self.enc(torch.cat([a, b])))
        return info_nce_loss(y[:len(a)].float(), y[len(a):].float(),
                             temperature=self.cfg.loss.temperature)

    def generator_loss(self, x0: torch.Tensor, cond: torch.Tensor, precision: str,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        return self.diffusion.loss(wrap(self.den, self.device, precision), x0, cond,
                                   p_uncond=self.cfg.generator.cond_dropout, generator=generator)

    @staticmethod
    def step(loss: torch.Tensor, opt: torch.optim.Optimizer) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def precision_speedups(rows: np.ndarray, cfg, device: torch.device) -> dict:  # noqa: ANN001
    """Seconds per encoder step, generator step and default bank-sampler batch, in fp32 and in
    bf16 autocast, on the same models and data: ``{phase: (fp32 s, bf16 s)}``."""
    dna = get_modality("dna")
    x = dna.to_model(rows).to(device)
    bare = BareModels(cfg, x, device)
    batch, gb = min(cfg.optim.batch_size, len(x) // 2), min(cfg.generator.batch_size, len(x))
    x0 = dna.to_diffusion(x[:gb])
    cond = torch.randn(gb, cfg.encoder.embed_dim, device=device)
    out = {}
    for precision in ("fp32", "bf16"):
        def enc_step(precision: str = precision) -> None:
            bare.step(bare.encoder_loss(x[:batch], x[batch:2 * batch], precision), bare.opt)

        def gen_step(precision: str = precision) -> None:
            bare.step(bare.generator_loss(x0, cond, precision), bare.gopt)

        def sample(precision: str = precision) -> None:
            with torch.no_grad():
                bare.diffusion.sample(wrap(bare.den, device, precision), cond[:64],
                                      (min(64, gb), *x0.shape[1:]), steps=cfg.bank.steps,
                                      strength=cfg.bank.strength, x_init=x0[:64],
                                      guidance_scale=cfg.bank.guidance_scale)

        for phase, fn in (("encoder step", enc_step), ("generator step", gen_step),
                          ("bank sampling", sample)):
            out.setdefault(phase, []).append(timed(fn, 3, device))
    return {k: tuple(v) for k, v in out.items()}


def loop_overhead(rows: np.ndarray, overrides: list[str], tmp: Path,
                  device: torch.device = torch.device("cpu"),
                  epochs: int = 3) -> tuple[float, float, str]:
    """Seconds per step of the project's encoder and generator phases (with everything a real
    run does per epoch or block: positives, metrics rows, diagnostics, the checkpoint at the
    preset's ``checkpoint_every_s`` cadence) divided by a bare loop's: the same encoder, head,
    loss, optimiser, precision, batch and in-memory data, a plain ``for`` loop with precomputed
    positives and no checkpoint, log or bank. Returns both ratios and a line saying where the
    time goes (the checkpoint column: its cost at the cadence, and per write)."""
    from diffaug_genomics.train.loop import Stage

    cfg = resolve_config("default", overrides=[*overrides, "schedule.rounds=1"])
    dna = get_modality("dna")
    run = tmp / "overhead"
    (run / "checkpoints").mkdir(parents=True)
    (run / "cache").mkdir()
    trainer = Trainer(cfg, dna, rows, run, device)
    setup, models, progress = trainer.setup, trainer.models, trainer.progress
    precision = setup.precision
    x_all = dna.to_model(rows).to(device)
    positives = x_all.roll(1, dims=-1)  # stand-in generated positives, the bank's layout
    progress.bank = place_bank(setup, positives.unsqueeze(1).half().cpu())
    trainer._prepare_stage(0)
    progress.cond = torch.randn(len(rows), cfg.encoder.embed_dim, device=device)
    steps = setup.steps_per_epoch
    t = time.perf_counter()
    trainer.save_checkpoint()
    write = time.perf_counter() - t

    # the bare loops
    bare = BareModels(cfg, x_all, device)
    batch = setup.batch
    perm = torch.randperm(len(rows)).to(device)
    g = cfg.generator
    block = min(g.steps_per_checkpoint, g.steps)
    gen = torch.Generator().manual_seed(0)
    x0_all = dna.to_diffusion(x_all)

    def bare_epoch() -> None:
        for step in range(steps):
            idx = perm[step * batch:(step + 1) * batch]
            bare.step(bare.encoder_loss(x_all[idx], positives[idx], precision), bare.opt)
        sync(device)

    def bare_block() -> None:
        for _ in range(block):
            idx = torch.randint(len(rows), (min(g.batch_size, len(rows)),), generator=gen)
            idx = idx.to(device)
            bare.step(bare.generator_loss(x0_all[idx], progress.cond[idx], precision, gen),
                      bare.gopt)
        sync(device)

    # the project (encoder epochs with positives from the bank, generator blocks) and the bare
    # loop in turns, each side's fastest turn counted: the first turn warms caches up, and a
    # busy machine slows both sides alike
    enc_stage, gen_stage = Stage("encoder", 1, epochs), Stage("generator", 1, epochs)
    turns: dict[str, list[float]] = {k: [] for k in ("epoch", "diagnostics", "checkpoint",
                                                     "bare", "gen", "bare_gen")}
    for e in range(epochs):
        t0 = time.perf_counter()
        encoder_epoch(setup, models, progress, enc_stage, e)
        sync(device)
        t1 = time.perf_counter()
        encoder_diagnostics(setup, models, progress, "encoder", 1, e)
        t2 = time.perf_counter()
        if trainer._checkpoint_due():  # what run() does at a unit end inside a stage
            trainer.save_checkpoint()
        t3 = time.perf_counter()
        progress.step_in_unit = 0
        bare_epoch()
        t4 = time.perf_counter()
        for key, value in (("epoch", t1 - t0), ("diagnostics", t2 - t1),
                           ("checkpoint", t3 - t2), ("bare", t4 - t3)):
            turns[key].append(value / steps)
    for e in range(epochs):
        t0 = time.perf_counter()
        generator_block(setup, models, progress, gen_stage, e)
        generator_diagnostics(setup, models, progress, gen_stage)
        if trainer._checkpoint_due():
            trainer.save_checkpoint()
        progress.step_in_unit = 0
        sync(device)
        t1 = time.perf_counter()
        bare_block()
        turns["gen"].append((t1 - t0) / block)
        turns["bare_gen"].append((time.perf_counter() - t1) / block)
    best = {k: min(v) for k, v in turns.items()}
    project_enc = best["epoch"] + best["diagnostics"] + best["checkpoint"]
    bare_enc, project_gen, bare_gen = best["bare"], best["gen"], best["bare_gen"]
    per_step = {k: 1000 * best[k] for k in ("epoch", "diagnostics", "checkpoint")}
    detail = (f"encoder ms per step: bare {1000 * bare_enc:.1f}, project "
              f"{per_step['epoch']:.1f} in the epoch + {per_step['diagnostics']:.1f} diagnostics + "
              f"{per_step['checkpoint']:.1f} checkpoint (every {cfg.checkpoint_every_s:g} s; "
              f"{1000 * write:.0f} ms per write); generator ms per step: bare "
              f"{1000 * bare_gen:.1f}, project {1000 * project_gen:.1f}; fastest of {epochs} "
              "turns each")
    return project_enc / bare_enc, project_gen / bare_gen, detail


def diagnostics_overhead(tmp: Path, device: torch.device = torch.device("cpu")) -> float:
    """Share of a ``tiny`` run's time (the example, 500 x 200 bp) spent in the label-free
    diagnostics and the batch-norm recalibration passes, relative to the rest of the run: every
    method that computes them is timed in the same process."""
    spent = {"s": 0.0}
    where = ((run_diagnostics, "sample_embeddings"), (loop, "generator_diagnostics"),
             (bank_phase, "bank_diagnostics"))  # each where the loop calls it
    originals = {(module, name): getattr(module, name) for module, name in where}

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
        for (module, name), fn in originals.items():
            setattr(module, name, timed_method(fn))
        t = time.perf_counter()
        Trainer(cfg, get_modality("dna"), rows, d, device).run()
        total = time.perf_counter() - t
    finally:
        for (module, name), fn in originals.items():
            setattr(module, name, fn)
    return spent["s"] / (total - spent["s"])


def memory_per_batch(cfg, batch_sizes: tuple[int, ...] = (128, 256, 512, 1024),  # noqa: ANN001
                     length: int = 200) -> list[str]:
    """Expected device memory of a training step, measured on any device: the bytes of every
    tensor autograd saves for the backward pass (the activations that dominate a step's peak),
    in fp32 and in bf16 autocast, for the encoder phase (``2 B`` rows: source and positive)
    and the generator phase (``B`` rows), plus the weights, gradients and AdamW state of each
    model (4x the parameters, float32). One line per batch size."""
    dna = get_modality("dna")
    x_all = dna.to_model(example_rows(max(batch_sizes) * 2))
    bare = BareModels(cfg, x_all, torch.device("cpu"))

    def saved_bytes(fn) -> int:  # noqa: ANN001
        seen: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn()
        return sum(seen.values())

    def state_mib(*models: torch.nn.Module) -> float:
        return 4 * sum(p.numel() * 4 for m in models for p in m.parameters()) / 2**20

    den = bare.den
    lines = [f"weights + grads + AdamW state: encoder {state_mib(bare.enc, bare.head):.0f} MiB, "
             f"denoiser {state_mib(den):.0f} MiB (+ its EMA copy {state_mib(den) / 4:.0f} MiB)"]
    for b in batch_sizes:
        out = []
        for precision in ("fp32", "bf16"):
            def enc_fwd(b: int = b, precision: str = precision) -> None:
                bare.encoder_loss(x_all[:b], x_all[b:2 * b], precision)

            def gen_fwd(b: int = b, precision: str = precision) -> None:
                bare.generator_loss(dna.to_diffusion(x_all[:b]),
                                    torch.randn(b, cfg.encoder.embed_dim), precision)

            out.append((saved_bytes(enc_fwd) / 2**20, saved_bytes(gen_fwd) / 2**20))
        (e32, g32), (e16, g16) = out
        lines.append(f"batch {b:5d}: encoder activations {e32:7.0f} MiB fp32 / {e16:7.0f} MiB "
                     f"bf16; generator {g32:7.0f} / {g16:7.0f} MiB ({length} bp)")
    return lines


def auto_precision_check(rows: np.ndarray, overrides: list[str],
                         device: torch.device) -> list[str]:
    """CPU seconds (``time.process_time``) of a short ``default`` fit on ``rows`` (1 warm-up
    epoch, one round of 50 generator steps, a bank refresh, 1 encoder epoch) in fp32, in bf16,
    and with ``precision: auto`` twice: first measuring (an empty per-machine cache), then
    deciding from the figures the first kept. One line each, then the verdict."""
    import os

    from diffaug_genomics.fit import fit
    from diffaug_genomics.io.onehot_writer import OneHotWriter

    short = [*overrides, "schedule.warmup_epochs=1", "schedule.rounds=1",
             "schedule.epochs_per_round=1", "generator.steps=50"]
    out, seconds = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "rows.h5"
        with OneHotWriter(data, rows.shape[1], {"policy": "center"}) as w:
            w.append(rows, [f"s{i}" for i in range(len(rows))], np.full(len(rows), rows.shape[1]))
        os.environ["DIFFAUG_TUNING_CACHE"] = str(Path(tmp) / "tuning.json")
        for name, precision in (("fp32", "fp32"), ("bf16", "bf16"), ("auto, measuring", "auto"),
                                ("auto, decided before", "auto")):
            t = time.process_time()
            fit(data, Path(tmp) / name.replace(" ", "_").replace(",", ""), preset="default",
                overrides=[*short, f"precision={precision}"], device=str(device), seed=0)
            seconds[name] = time.process_time() - t
            record = load_yaml(Path(tmp) / name.replace(" ", "_").replace(",", "") / "config.yaml")
            out.append(f"{name:22s} {seconds[name]:7.1f} CPU s ({record['resolved_precision']}; "
                       f"{record['precision_decision']['reason'][:150]})")
    best = min(seconds["fp32"], seconds["bf16"])
    for name in ("auto, measuring", "auto, decided before"):
        out.append(f"{name}: {seconds[name] / best:.3f}x the faster of fp32 / bf16 "
                   f"({'at least as fast' if seconds[name] <= 1.03 * best else 'SLOWER'}, "
                   "3 % tolerance for timing noise)")
    return out


def compile_end_to_end(rows: np.ndarray, overrides: list[str], tmp: Path,
                       device: torch.device) -> tuple[float, float]:
    """Seconds of a short ``default`` fit (1 warm-up epoch, one round of 100 generator steps, a
    bank refresh and 1 encoder epoch) on ``rows``, eager and with ``compile: true`` (compile
    time included)."""
    out = []
    for flag in ("false", "true"):
        cfg = resolve_config("default", overrides=[
            *overrides, f"compile={flag}", "schedule.warmup_epochs=1", "schedule.rounds=1",
            "schedule.epochs_per_round=1", "generator.steps=100"])
        d = tmp / f"compile-{flag}"
        (d / "checkpoints").mkdir(parents=True)
        (d / "cache").mkdir()
        t = time.perf_counter()
        Trainer(cfg, get_modality("dna"), rows, d, device).run()
        sync(device)
        out.append(time.perf_counter() - t)
    return out[0], out[1]


if __name__ == "__main__":
    main()
