"""``diffaug embed``: encoder embeddings of every input record, in input order."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from diffaug_genomics.io.atomic import atomic_output, check_output
from diffaug_genomics.io.h5 import write_embeddings
from diffaug_genomics.progress import LOG, progress
from diffaug_genomics.shards import Shard


@dataclass
class EmbedSummary:
    n: int
    dim: int
    seconds: float
    output: Path | None = None
    skipped: bool = False

    def line(self) -> str:
        if self.skipped:
            return f"{self.output} is complete already ({self.n} sequences): skipped"
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
          device: str = "auto", force: bool = False, shard: Shard | None = None,
          label_column: str | None = None, obs_key: str | None = None,
          backbone: str | None = None) -> EmbedSummary:
    """Embed every record of ``source`` (HDF5 or FASTA, ``-`` for stdin) with a finished run.

    Writes ``embeddings/1`` HDF5 at ``output``: ``/embeddings (N, D) float32``, ``/ids``,
    ``/labels`` when the input had them, attrs naming the run, config hash and checkpoint.
    With ``shard`` (of more than one), only the shard's rows, to its own file (see
    :mod:`diffaug_genomics.shards`); a shard file of the same run and input is left as it is.
    Image and tabular runs: see :mod:`diffaug_genomics.embed_samples` (``label_column`` /
    ``obs_key`` name the labels; an ``.h5ad`` input gives an ``.h5ad`` output). ``backbone``
    (``package.module:factory``) registers the run's third-party modality first.
    """
    from diffaug_genomics.inputs import iter_chunks
    from diffaug_genomics.runs import load_run
    from diffaug_genomics.shards import count_rows, slice_chunks
    from diffaug_genomics.train.distributed import resolve_device

    sharded = shard is not None and shard.count > 1
    target = shard.path(output) if sharded else Path(output)
    t0 = time.perf_counter()
    if backbone is not None:
        from diffaug_genomics.models.registry import load_backbone

        load_backbone(backbone)
    inputs = (source, run_dir)
    check_output(target, force or (sharded and target.exists()), inputs)  # before any work
    run = load_run(run_dir, resolve_device(device))
    if run.modality.io is not None:  # images, tables
        from diffaug_genomics.embed_samples import embed_samples
        from diffaug_genomics.samples import ReadOptions

        if sharded:
            from diffaug_genomics.errors import InputError

            raise InputError("--shard is supported for DNA inputs only", path=source)
        return embed_samples(run, source, output, ReadOptions(label_column, obs_key),
                             batch_size=batch_size, force=force, t0=t0, inputs=inputs)
    if sharded and not force and target.exists():
        done = _complete_shard(target, run.config_hash, source, shard)
        if done is not None:
            return EmbedSummary(done, run.config.encoder.embed_dim, 0.0, target, skipped=True)
    check_output(target, force, inputs)
    data = run.config.data
    length = run.sample_shape[-1]
    chunks = iter_chunks(source, length, data.policy, data.stride)
    extra: dict[str, int] = {}
    if sharded:
        total = count_rows(source, length, data.policy, data.stride)
        start, stop = shard.rows(total)
        chunks = slice_chunks(chunks, start, stop)
        extra = {"shard_index": shard.index, "shard_count": shard.count, "shard_start": start,
                 "shard_stop": stop, "total_rows": total}
        LOG.info("shard %s: rows %d-%d of %d -> %s", shard, start, stop, total, target)
    blocks, ids, labels = [], [], []
    has_labels = True
    with progress("embed", unit="seq") as bar:
        for chunk in chunks:
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
             "checkpoint": str((Path(run_dir) / "encoder.pt").resolve()), "source": str(source),
             **extra}
    with atomic_output(target, force, inputs) as tmp:
        write_embeddings(tmp, emb, ids, labels if has_labels and labels else None, attrs)
    return EmbedSummary(len(ids), emb.shape[1], time.perf_counter() - t0, target)


def _complete_shard(path: Path, config_hash: str, source: str | Path, shard: Shard) -> int | None:
    """Rows of an existing shard file made by the same run from the same input, else None
    (then the caller refuses to overwrite it without ``force``)."""
    from diffaug_genomics.io.h5 import read_embeddings

    try:
        _, ids, _, attrs = read_embeddings(path)
    except Exception:  # unreadable: let check_output report it
        return None
    same = (str(attrs.get("config_hash")) == config_hash and str(attrs.get("source")) == str(source)
            and int(attrs.get("shard_index", -1)) == shard.index
            and int(attrs.get("shard_count", -1)) == shard.count)
    return len(ids) if same else None
