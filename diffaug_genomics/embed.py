"""``diffaug embed``: encoder embeddings of every input record, in input order."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from diffaug_genomics.io.atomic import atomic_output, check_output
from diffaug_genomics.io.h5 import write_embeddings
from diffaug_genomics.progress import progress


@dataclass
class EmbedSummary:
    n: int
    dim: int
    seconds: float

    def line(self) -> str:
        rate = self.n / max(self.seconds, 1e-9)
        return f"embedded {self.n} sequences into {self.dim} dimensions in {self.seconds:.1f} s ({rate:.0f} seq/s)"


def embed_array(encoder: torch.nn.Module, x: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """Embeddings ``(N, D) float32`` of model-layout inputs ``x`` (e.g. ``(N, 4, L)``)."""
    device = next(encoder.parameters()).device
    out = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            out.append(encoder(x[start:start + batch_size].to(device)).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def embed(run_dir: str | Path, source: str | Path, output: str | Path, *, batch_size: int = 512,
          device: str = "auto", force: bool = False, label_column: str | None = None,
          obs_key: str | None = None, backbone: str | None = None) -> EmbedSummary:
    """Embed every record of ``source`` (HDF5 or FASTA, ``-`` for stdin) with a finished run.

    Writes ``embeddings/1`` HDF5 at ``output``: ``/embeddings (N, D) float32``, ``/ids``,
    ``/labels`` when the input had them, attrs naming the run, config hash and checkpoint.
    Image and tabular runs: see :mod:`diffaug_genomics.embed_samples` (``label_column`` /
    ``obs_key`` name the labels; an ``.h5ad`` input gives an ``.h5ad`` output). ``backbone``
    (``package.module:factory``) registers the run's third-party modality first.
    """
    from diffaug_genomics.inputs import iter_chunks
    from diffaug_genomics.runs import load_run
    from diffaug_genomics.train.distributed import resolve_device

    check_output(output, force)
    t0 = time.perf_counter()
    if backbone is not None:
        from diffaug_genomics.models.registry import load_backbone

        load_backbone(backbone)
    run = load_run(run_dir, resolve_device(device))
    if run.modality.io is not None:  # images, tables
        from diffaug_genomics.embed_samples import embed_samples
        from diffaug_genomics.samples import ReadOptions

        return embed_samples(run, source, output, ReadOptions(label_column, obs_key),
                             batch_size=batch_size, force=force, t0=t0)
    data = run.config.data
    length = run.sample_shape[-1]
    blocks, ids, labels = [], [], []
    has_labels = True
    with progress("embed", unit="seq") as bar:
        for chunk in iter_chunks(source, length, data.policy, data.stride):
            x = run.modality.to_model(chunk.onehot)
            blocks.append(embed_array(run.encoder, x, batch_size))
            ids += chunk.ids
            if chunk.labels is None:
                has_labels = False
            else:
                labels += chunk.labels
            bar.advance(len(chunk.ids))
    emb = np.concatenate(blocks) if blocks else np.zeros((0, run.config.encoder.embed_dim), np.float32)
    attrs = {"run_dir": str(Path(run_dir).resolve()), "config_hash": run.config_hash,
             "checkpoint": str((Path(run_dir) / "encoder.pt").resolve()), "source": str(source)}
    with atomic_output(output, force) as tmp:
        write_embeddings(tmp, emb, ids, labels if has_labels and labels else None, attrs)
    return EmbedSummary(len(ids), emb.shape[1], time.perf_counter() - t0)
