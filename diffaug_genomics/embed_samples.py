"""``diffaug embed`` for images and tables: embeddings of every sample, in input order.

The input is read with the run's modality and preprocessed with the run's stored
preprocessing (``preprocess.json``). Output: an ``embeddings/1`` HDF5 file (``/embeddings``,
``/ids``, ``/labels`` from ``--label-column`` or image sub-folders); when the input was an
``.h5ad``, an AnnData file with ``obsm['X_diffaug']`` instead (labels from ``--obs-key`` in
``obs``), as scanpy users expect.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from diffaug_genomics.io.atomic import atomic_output
from diffaug_genomics.runs import FinishedRun
from diffaug_genomics.samples import ReadOptions, read_run_input


@dataclass
class SampleEmbedSummary:
    n: int
    dim: int
    seconds: float
    output_format: str

    def line(self) -> str:
        rate = self.n / max(self.seconds, 1e-9)
        return (f"embedded {self.n} samples into {self.dim} dimensions in {self.seconds:.1f} s "
                f"({rate:.0f} samples/s), {self.output_format}")


def embed_rows(run: FinishedRun, rows: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Embeddings ``(N, D) float32`` of preprocessed rows ``(N, *sample_shape)``."""
    from diffaug_genomics.embed import embed_array

    if len(rows) == 0:
        return np.zeros((0, run.config.encoder.embed_dim), np.float32)
    return embed_array(run.encoder, run.modality.to_model(rows), batch_size)


def embed_samples(run: FinishedRun, source: str | Path, output: str | Path,
                  options: ReadOptions, *, batch_size: int = 512, force: bool = False,
                  t0: float | None = None, inputs: tuple = ()) -> SampleEmbedSummary:
    """Embed every sample of ``source`` with a finished image / tabular run (module docstring)."""
    from diffaug_genomics.io.h5 import write_embeddings

    t0 = time.perf_counter() if t0 is None else t0
    samples, rows, _ = read_run_input(run, source, options)
    with torch.no_grad():
        emb = embed_rows(run, rows, batch_size)
    info = {"run_dir": str(Path(run.run_dir).resolve()), "config_hash": run.config_hash,
            "checkpoint": str((Path(run.run_dir) / "encoder.pt").resolve()),
            "source": str(source), "modality": run.modality.name}
    with atomic_output(output, force, (source, run.run_dir, *inputs)) as tmp:
        if samples.source_format == "h5ad":
            from diffaug_genomics.io.h5ad import write_embeddings_h5ad

            write_embeddings_h5ad(tmp, emb, samples.ids, samples.labels, samples.label_key,
                                  {**info, "label_key": samples.label_key})
            fmt = "AnnData .h5ad with obsm['X_diffaug']"
        else:
            write_embeddings(tmp, emb, samples.ids, samples.labels, info)
            fmt = "embeddings HDF5"
    return SampleEmbedSummary(len(samples.ids), emb.shape[1], time.perf_counter() - t0, fmt)
