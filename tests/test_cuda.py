"""The CUDA path: models, fit / embed / generate, checkpoints across devices, nccl.

Marked ``cuda`` and skipped without a CUDA device; ``benchmarks/gpu_check.sh`` runs them on a
GPU (``pytest -m cuda``).
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import MICRO

from diffaug_genomics.config import resolve_config
from diffaug_genomics.diffusion import Diffusion
from diffaug_genomics.modalities.registry import get_modality
from diffaug_genomics.train.precision import autocast, wrap

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device (benchmarks/gpu_check.sh)")]

CUDA = torch.device("cuda")
PY = sys.executable
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]  # wherever its script is installed
MICRO_ARGS = [a for o in MICRO for a in ("--set", o)]
ENV = {**{k: v for k, v in os.environ.items()
          if not k.startswith(("SLURM_", "MASTER_")) and k not in ("RANK", "WORLD_SIZE")},
       "DIFFAUG_NO_BAR": "1"}


def cli(*args: object, launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([*(launcher or [PY]), "-m", "diffaug_genomics_cli.main",
                           *map(str, args)], env=ENV, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("backbone", ["spectrum", "conv1d"])
def test_encoder_forward_and_backward_on_cuda_match_the_cpu(backbone, precision, example_rows):
    cfg = resolve_config("tiny", overrides=[*MICRO, f"encoder.backbone={backbone}",
                                            "encoder.kmer_k=3"])
    dna = get_modality("dna")
    x = dna.to_model(example_rows)
    torch.manual_seed(0)
    enc = dna.build_encoder(cfg, tuple(x.shape[1:]))
    if hasattr(enc, "fit_init"):
        enc.fit_init(x)
    gpu = copy.deepcopy(enc).to(CUDA)
    with torch.no_grad():  # the same weights and batch-norm statistics on both devices
        ref = enc.eval()(x)
        got = gpu.eval()(x.to(CUDA)).cpu()
    assert torch.allclose(got, ref, rtol=1e-2, atol=1e-2)
    gpu.train()
    with autocast(CUDA, precision):
        z = gpu(x.to(CUDA))
    z.float().square().mean().backward()
    grads = [p.grad for p in gpu.parameters() if p.requires_grad]
    assert grads and all(g is not None and bool(torch.isfinite(g).all()) for g in grads)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_denoiser_trains_and_samples_on_cuda(precision, example_rows):
    cfg = resolve_config("tiny", overrides=MICRO)
    dna = get_modality("dna")
    x0 = dna.to_diffusion(dna.to_model(example_rows[:32])).to(CUDA)
    den = dna.build_denoiser(cfg, tuple(x0.shape[1:]), cfg.encoder.embed_dim).to(CUDA)
    diffusion = Diffusion.from_config(cfg.generator).to(CUDA)
    cond = torch.randn(32, cfg.encoder.embed_dim, device=CUDA)
    model = wrap(den, CUDA, precision)
    gen = torch.Generator(CUDA).manual_seed(0)
    loss = diffusion.loss(model, x0, cond, generator=gen)
    assert loss.dtype == torch.float32 and bool(torch.isfinite(loss))
    loss.backward()
    assert all(bool(torch.isfinite(p.grad).all()) for p in den.parameters() if p.grad is not None)
    den.eval()
    with torch.no_grad():
        out = diffusion.sample(model, cond, tuple(x0.shape), steps=4, strength=0.5, x_init=x0,
                               generator=gen)
    assert out.device.type == "cuda" and out.dtype == torch.float32
    assert bool(torch.isfinite(out).all())


@pytest.fixture(scope="module")
def cuda_run(example_fasta, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("cuda") / "run"
    cli("fit", example_fasta, "-o", run, "--preset", "tiny", *MICRO_ARGS, "--device", "cuda")
    return run


def test_tiny_fit_embed_generate_on_cuda(cuda_run, example_fasta, tmp_path):
    assert (cuda_run / "encoder.pt").exists() and (cuda_run / "generator.pt").exists()
    cli("embed", cuda_run, example_fasta, "-o", tmp_path / "gpu.h5", "--device", "cuda")
    with h5py.File(tmp_path / "gpu.h5") as f:
        emb = f["embeddings"][()]
    assert emb.shape[0] == 500 and np.isfinite(emb).all()
    cli("generate", cuda_run, example_fasta, "-o", tmp_path / "pos.fa", "--device", "cuda",
        "-k", "2")
    records = (tmp_path / "pos.fa").read_text().count(">")
    assert records == 1000


def test_checkpoint_written_on_gpu_embeds_on_cpu(cuda_run, example_fasta, tmp_path):
    from diffaug_genomics.train import checkpoint as ckpt

    raw = torch.load(cuda_run / "checkpoints" / "latest.pt", weights_only=True)
    assert any(v.device.type == "cuda" for v in raw["encoder"].values())  # written from the GPU
    state = ckpt.load(cuda_run / "checkpoints" / "latest.pt", ckpt.CHECKPOINT_FORMAT)
    assert all(v.device.type == "cpu" for v in state["encoder"].values())
    cli("embed", cuda_run, example_fasta, "-o", tmp_path / "cpu.h5", "--device", "cpu")
    cli("embed", cuda_run, example_fasta, "-o", tmp_path / "gpu.h5", "--device", "cuda")
    with h5py.File(tmp_path / "cpu.h5") as a, h5py.File(tmp_path / "gpu.h5") as b:
        np.testing.assert_allclose(a["embeddings"][()], b["embeddings"][()], rtol=1e-2,
                                   atol=1e-2)


def test_bank_and_batches_live_on_the_gpu(example_rows, tmp_path):
    from diffaug_genomics.train.loop import Trainer

    cfg = resolve_config("tiny", overrides=MICRO, device="cuda")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "cache").mkdir()
    trainer = Trainer(cfg, get_modality("dna"), example_rows, tmp_path, CUDA)
    assert trainer.setup.x(np.arange(8)).device.type == "cuda"
    trainer.run()
    assert trainer.progress.bank.device.type == "cuda"  # a few MiB: fits
    major = torch.cuda.get_device_capability()[0]
    assert trainer.setup.precision == ("bf16" if major >= 8 else "fp32")  # auto: native bf16 only


PROBE = """
import sys, torch, torch.distributed as dist
from diffaug_genomics.fit import fit
torch.cuda.set_device(0)
dist.init_process_group("nccl")
assert dist.get_backend() == "nccl"
from diffaug_genomics.train import distributed as d
assert d.any_rank(True) and not d.any_rank(False)
assert d.mean_over_ranks(torch.tensor(3.0, device="cuda")) == 3.0
fit(sys.argv[1], sys.argv[2], preset="tiny", overrides=sys.argv[3:], device="cuda")
dist.destroy_process_group()
print("nccl probe done")
"""


def test_torchrun_one_process_with_nccl(example_fasta, tmp_path):
    """torchrun --nproc-per-node 1 on one GPU: the nccl group is initialised, and a fit inside
    it runs its every-step stop agreement over nccl."""
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    proc = subprocess.run([*TORCHRUN, "--standalone", "--nproc-per-node", "1", str(probe),
                           str(example_fasta), str(tmp_path / "run"), *MICRO],
                          env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "nccl probe done" in proc.stdout
    assert (tmp_path / "run" / "encoder.pt").exists()
    # and the project's own launch path: torchrun runs the CLI (one rank: no group needed)
    cli("fit", example_fasta, "-o", tmp_path / "cli-run", "--preset", "tiny", *MICRO_ARGS,
        "--device", "cuda", launcher=[*TORCHRUN, "--standalone", "--nproc-per-node", "1"])


def test_auto_batch_scale_and_precision_are_decided_on_cuda(example_rows, monkeypatch,
                                                            tmp_path):
    """batch_scaling: auto keeps a small dataset's batch, scales by the measured step memory
    when the rows allow it; precision: auto times both candidates on the device."""
    from diffaug_genomics.train import autotune
    from diffaug_genomics.train.distributed import SINGLE

    monkeypatch.setenv("DIFFAUG_TUNING_CACHE", str(tmp_path / "tuning.json"))
    dna = get_modality("dna")
    cfg = resolve_config("tiny", overrides=MICRO)
    m, why = autotune._batch_multiplier(cfg, dna, example_rows, CUDA, SINGLE)
    assert m == 1 and "rows" in why
    monkeypatch.setattr(autotune, "MIN_STEPS_PER_EPOCH", 1)  # 128 rows / 32: up to x4
    m, why = autotune._batch_multiplier(cfg, dna, example_rows, CUDA, SINGLE)
    assert m == 4 and "GiB free" in why
    precision, decision = autotune.choose_precision(autotune.scale_batches(cfg, m), dna,
                                                    example_rows, CUDA)
    assert precision in ("fp32", "bf16")
    per_step = decision["seconds_per_step"]
    assert set(per_step) == {"fp32", "bf16"} and all(v > 0 for p in per_step.values()
                                                     for v in p.values())
