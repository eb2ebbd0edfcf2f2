"""``diffaug generate`` for images and tables: generated positives as an array file.

Each source sample is embedded by the run's encoder and its conditional diffusion model
samples K positives (DDIM, optionally SDEdit-style from the noised source, classifier-free
guidance), exactly as the bank of positives is refreshed during training. Positives are mapped
back to the input's units with the run's stored preprocessing (pixel values in the input's
range and dtype, unscaled features) and written, K per source in input order:

- ``.npy``: ``(N * K, ...)``, each sample shaped like an input sample (``(H, W, C)`` images,
  ``(D,)`` rows);
- ``.h5`` / ``.hdf5``: ``/samples`` as above, ``/source_ids`` and ``/source_index`` (which
  input sample each positive comes from), attributes naming the run and sampler settings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from diffaug_genomics.errors import InputError
from diffaug_genomics.io.atomic import atomic_output
from diffaug_genomics.progress import progress
from diffaug_genomics.runs import FinishedRun
from diffaug_genomics.samples import ReadOptions, read_run_input

OUTPUT_SUFFIXES = (".npy", ".h5", ".hdf5")


@dataclass
class SampleGenerateSummary:
    n_sources: int
    n_generated: int
    rms_to_source: float
    seconds: float

    def line(self) -> str:
        per_k = 1000 * self.seconds / max(self.n_generated, 1)
        return (f"generated {self.n_generated} positives of {self.n_sources} samples: RMS "
                f"difference to the source {self.rms_to_source:.3f} (model units), "
                f"{per_k:.1f} s per 1000 samples")


def check_sample_output(output: str | Path) -> None:
    """Images and tables are written to ``.npy`` or HDF5, never to standard output."""
    if str(output) == "-" or Path(output).suffix.lower() not in OUTPUT_SUFFIXES:
        raise InputError("image and tabular runs write generated samples to a .npy or .h5 file "
                         "(-o positives.npy)", path=output)


def generate_samples(run: FinishedRun, source: str | Path, output: str | Path,
                     options: ReadOptions, *, per_sequence: int = 1, steps: int, strength: float,
                     guidance_scale: float, seed: int = 0, batch_size: int = 256,
                     force: bool = False, inputs: tuple = ()) -> SampleGenerateSummary:
    """Write ``per_sequence`` generated positives of every sample of ``source`` (module docstring)."""
    from diffaug_genomics.diffusion import Diffusion
    from diffaug_genomics.train.guards import require_finite

    check_sample_output(output)
    t0 = time.perf_counter()
    cfg, modality = run.config, run.modality
    samples, rows, record = read_run_input(run, source, options)
    dev = next(run.encoder.parameters()).device
    diffusion = Diffusion.from_config(cfg.generator).to(dev)
    gen = torch.Generator().manual_seed(seed)
    out: list[np.ndarray] = []
    sq_sum, count = 0.0, 0
    step = max(1, batch_size // per_sequence)
    with progress("generate", total=len(rows), unit="sample") as bar:
        for start in range(0, len(rows), step):
            x = modality.to_model(rows[start:start + step]).to(dev)
            xk, sample = run.sample_positives(diffusion, x, per_sequence, steps=steps,
                                              strength=strength, guidance_scale=guidance_scale,
                                              generator=gen)
            sample = modality.from_diffusion(sample)
            sq_sum += float(((sample - xk) ** 2).mean(dim=tuple(range(1, xk.dim()))).sqrt().sum())
            count += len(xk)
            out.append(sample.cpu().numpy())
            bar.advance(len(x))
    gen_rows = np.concatenate(out) if out else np.zeros((0, *rows.shape[1:]), np.float32)
    values = modality.io.inverse(gen_rows, record["state"])
    require_finite(values, f"generated samples for {output}")
    source_index = np.repeat(np.arange(len(rows)), per_sequence)
    with atomic_output(output, force, (source, run.run_dir, *inputs)) as tmp:
        if Path(output).suffix.lower() == ".npy":
            with open(tmp, "wb") as fh:
                np.save(fh, values)
        else:
            from diffaug_genomics.io.atomic import create_hdf5
            from diffaug_genomics.io.h5 import STR_DTYPE

            with create_hdf5(tmp) as f:
                f.create_dataset("samples", data=values)
                f.create_dataset("source_index", data=source_index.astype(np.int64))
                f.create_dataset("source_ids", dtype=STR_DTYPE, data=np.asarray(
                    [samples.ids[i] for i in source_index], dtype=object))
                f.attrs.update({"schema": "diffaug-genomics/generated/1",
                                "run_dir": str(Path(run.run_dir).resolve()),
                                "modality": modality.name, "steps": steps,
                                "strength": strength, "guidance_scale": guidance_scale,
                                "seed": seed, "per_sample": per_sequence})
    return SampleGenerateSummary(len(rows), len(values), sq_sum / max(count, 1),
                                 time.perf_counter() - t0)
