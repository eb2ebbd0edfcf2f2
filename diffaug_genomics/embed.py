"""``diffaug embed``: encoder embeddings of every input record, in input order.

The run's modality reads the input into rows (:meth:`~diffaug_genomics.modalities.interface.
ModalityIO.open_input`: DNA streams FASTA / one-hot HDF5 in chunks, images and tables apply the
run's stored preprocessing) and writes the embeddings (``embeddings/1`` HDF5; an ``.h5ad``
input gives an ``.h5ad`` output with ``obsm['X_diffaug']``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from diffaug_genomics.embeddings_out import (
    EMBED_FORMATS,
    EMBED_WHAT,
    write_embeddings_output,
)
from diffaug_genomics.errors import InputError
from diffaug_genomics.input_kinds import require_input_for, require_run
from diffaug_genomics.io.atomic import atomic_output, check_output
from diffaug_genomics.io.h5 import read_embeddings
from diffaug_genomics.io.samples import ReadOptions
from diffaug_genomics.modalities.registry import load_backbone
from diffaug_genomics.modalities.sequences import chunk_regions
from diffaug_genomics.output_formats import output_format
from diffaug_genomics.progress import LOG, progress
from diffaug_genomics.record_changes import report_changes
from diffaug_genomics.run_files import RunPaths
from diffaug_genomics.run_lock import output_lock
from diffaug_genomics.runs import load_run
from diffaug_genomics.shards import Shard, slice_chunks
from diffaug_genomics.train.distributed import resolve_device


@dataclass
class EmbedSummary:
    n: int
    dim: int
    seconds: float
    output: Path | None = None
    skipped: bool = False
    noun: str = "sequences"
    rate_unit: str = "seq"
    output_format: str | None = None

    def line(self) -> str:
        if self.skipped:
            return f"{self.output} is complete already ({self.n} {self.noun}): skipped"
        rate = self.n / max(self.seconds, 1e-9)
        text = (f"embedded {self.n} {self.noun} into {self.dim} dimensions in "
                f"{self.seconds:.1f} s ({rate:.0f} {self.rate_unit}/s)")
        return text if self.output_format is None else f"{text}, {self.output_format}"


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
    """Embed every record of ``source`` (HDF5 or FASTA, ``-`` for stdin; images or a table for
    image / tabular runs) with a finished run.

    Writes ``embeddings/1`` HDF5 at ``output``: ``/embeddings (N, D) float32``, ``/ids``,
    ``/labels`` when the input had them, attrs naming the run, config hash and checkpoint.
    With ``shard`` (of more than one; DNA inputs), only the shard's rows, to its own file (see
    :mod:`diffaug_genomics.shards`); a shard file of the same run and input is left as it is.
    ``label_column`` / ``obs_key`` name the labels of a table (an ``.h5ad`` input gives an
    ``.h5ad`` output). ``backbone`` (``package.module:factory``) registers the run's
    third-party modality first.
    """
    sharded = shard is not None and shard.count > 1
    target = shard.path(output) if sharded else Path(output)
    t0 = time.perf_counter()
    if backbone is not None:
        load_backbone(backbone)
    require_run(run_dir, "embed")
    inputs = (source, run_dir)
    run = load_run(run_dir, resolve_device(device))
    require_input_for(source, run.modality.name, "embed", run_dir)
    fmt = output_format(output, EMBED_FORMATS, "embed", EMBED_WHAT, inputs)
    if sharded and fmt.name != "hdf5":
        raise InputError("--shard writes HDF5 shards (-o EMB.h5); `diffaug merge` joins them",
                         path=output)
    check_output(target, force or (sharded and target.exists()), inputs)
    with output_lock(target, "diffaug embed", enabled=sharded):  # a retried array task
        io = run.modality.io
        if sharded and not io.shardable:
            raise InputError("--shard is supported for DNA inputs only", path=source)
        if sharded and not force and target.exists():
            done = _complete_shard(target, run.config_hash, source, shard)
            if done is not None:
                return EmbedSummary(done, run.config.encoder.embed_dim, 0.0, target, skipped=True)
        check_output(target, force, inputs)
        inp = io.open_input(run.trained, source, ReadOptions(label_column, obs_key))
        chunks = inp.chunks
        extra: dict[str, int] = {}
        if sharded:
            total = io.count_rows(run.trained, source)
            start, stop = shard.rows(total)
            chunks = slice_chunks(chunks, start, stop)
            extra = {"shard_index": shard.index, "shard_count": shard.count, "shard_start": start,
                     "shard_stop": stop, "total_rows": total}
            LOG.info("shard %s: rows %d-%d of %d -> %s", shard, start, stop, total, target)
        blocks, ids, labels, regions = [], [], [], []
        has_labels = True
        unit = io.progress_unit[0]
        with progress("embed", total=inp.total, unit=unit or "sample",
                      enabled=unit is not None) as bar:
            for chunk in chunks:
                if len(chunk.ids) == 0:
                    continue
                x = run.modality.to_model(chunk.rows)
                blocks.append(embed_array(run.encoder, x, batch_size))
                ids += chunk.ids
                if chunk.lengths is not None:
                    regions += chunk_regions(chunk)
                if chunk.labels is None:
                    has_labels = False
                else:
                    labels += chunk.labels
                bar.advance(len(chunk.ids))
        report_changes(inp)
        emb = np.concatenate(blocks) if blocks else np.zeros((0, run.config.encoder.embed_dim), np.float32)
        attrs = {"run_dir": str(Path(run_dir).resolve()), "config_hash": run.config_hash,
                 "checkpoint": str(RunPaths(run_dir).encoder.resolve()), "source": str(source),
                 **io.embedding_attrs(run.trained), **extra}
        labels_out = labels if has_labels and labels else None
        regions = regions if len(regions) == len(ids) and regions else None
        with atomic_output(target, force, inputs) as tmp:
            written = write_embeddings_output(tmp, fmt, emb, ids, labels_out, attrs, inp, source,
                                              regions)
        return EmbedSummary(len(ids), emb.shape[1], time.perf_counter() - t0, target,
                            noun=io.noun, rate_unit=io.rate_unit, output_format=written)


def _complete_shard(path: Path, config_hash: str, source: str | Path, shard: Shard) -> int | None:
    """Rows of an existing shard file made by the same run from the same input, else None
    (then the caller refuses to overwrite it without ``force``)."""
    try:
        _, ids, _, attrs = read_embeddings(path)
    except Exception:  # unreadable: let check_output report it
        return None
    same = (str(attrs.get("config_hash")) == config_hash and str(attrs.get("source")) == str(source)
            and int(attrs.get("shard_index", -1)) == shard.index
            and int(attrs.get("shard_count", -1)) == shard.count)
    return len(ids) if same else None
