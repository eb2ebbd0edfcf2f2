"""``diffaug generate``: synthetic positives of each input record.

Each source row is embedded by the run's encoder, and its conditional diffusion model samples
K positives (DDIM, optionally SDEdit-style from the noised source, with classifier-free
guidance), exactly as the bank of positives is refreshed during training. The run's modality
reads the input and writes the positives (:meth:`~diffaug_genomics.modalities.interface.
ModalityIO.positives_writer`): DNA as FASTA (bases argmax-decoded, each positive of its
source's own length), images and tables as a ``.npy`` or ``.h5`` array in the input's units.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from diffaug_genomics.diffusion import Diffusion
from diffaug_genomics.errors import InputError
from diffaug_genomics.input_kinds import require_input_for, require_run
from diffaug_genomics.io.atomic import check_output
from diffaug_genomics.io.samples import ReadOptions
from diffaug_genomics.modalities.arrays import SampleGenerateSummary
from diffaug_genomics.modalities.fasta_shards import (
    fasta_shard_state,
    sidecar_path,
    write_fasta_sidecar,
)
from diffaug_genomics.modalities.interface import Sampling
from diffaug_genomics.modalities.registry import load_backbone
from diffaug_genomics.modalities.sequences import GenerateSummary
from diffaug_genomics.output_formats import output_format
from diffaug_genomics.progress import LOG, progress
from diffaug_genomics.record_changes import report_changes
from diffaug_genomics.run_lock import output_lock
from diffaug_genomics.runs import load_run
from diffaug_genomics.shards import Shard, shard_seed, slice_chunks
from diffaug_genomics.train.distributed import resolve_device

__all__ = ["GenerateSummary", "SampleGenerateSummary", "generate"]

POSITIVES_WHAT = {"fasta": "FASTA", "hdf5": "HDF5: one-hot for DNA, /samples for arrays",
                  "npy": "NumPy array of samples"}


def generate(run_dir: str | Path, source: str | Path, output: str | Path, *, per_sequence: int = 1,
             steps: int | None = None, strength: float | None = None,
             guidance_scale: float | None = None, seed: int = 0, batch_size: int = 256,
             device: str = "auto", force: bool = False,
             shard: Shard | None = None, label_column: str | None = None,
             obs_key: str | None = None, backbone: str | None = None
             ) -> GenerateSummary | SampleGenerateSummary:
    """Write ``per_sequence`` generated positives of every record of ``source`` to ``output``
    (DNA: FASTA, ``-`` for stdout; images and tables: ``.npy`` or ``.h5``). Sampler settings
    default to the run's ``bank`` configuration.

    With ``shard`` (of more than one; DNA inputs): only the shard's rows, to its own file (see
    :mod:`diffaug_genomics.shards`), sampled with the seed :func:`shard_seed` ``(seed, i, N)``:
    reproducible for a given N, but not the draws of an unsharded run. A shard file that
    exists is complete (written atomically) and is skipped unless ``force``. ``backbone``
    registers a third-party modality.
    """
    to_stdout = str(output) == "-"
    sharded = shard is not None and shard.count > 1
    require_run(run_dir, "generate")
    t0 = time.perf_counter()
    dev = resolve_device(device)
    if backbone is not None:
        load_backbone(backbone)
    run = load_run(run_dir, dev, with_generator=True)
    cfg = run.config
    io = run.modality.io
    require_input_for(source, run.modality.name, "generate", run_dir)
    fmt = output_format(output, io.positives_formats, "generate", POSITIVES_WHAT,
                        (source, run_dir))
    if sharded:
        if to_stdout:
            raise InputError("--shard writes one file per shard: give -o FILE, not -o -")
        if fmt.compression is not None or (fmt.name == "fasta") != io.shardable:
            raise InputError("--shard writes plain FASTA shards (-o POSITIVES.fa); `diffaug "
                             "merge` joins them", path=output)
        output = shard.path(output)
        seed = shard_seed(seed, shard.index, shard.count)
    inputs = (source, run_dir)
    if not to_stdout:
        check_output(output, force or sharded, inputs)
    with output_lock(output, "diffaug generate", enabled=sharded):  # FASTA + its record
        if sharded and not io.shardable:
            raise InputError("--shard is supported for DNA inputs only", path=source)
        if sharded and output.exists() and not force:
            state = fasta_shard_state(output, run.config_hash, source, shard)
            if state == "complete":
                return GenerateSummary(0, 0, 0.0, 0.0, 0.0, 0.0, skipped=output)
            if state == "foreign":
                check_output(output, force, inputs)  # exists: --force to overwrite
            LOG.info("%s has no record of completion (interrupted?): writing it again", output)
            force = True
        b = cfg.bank
        sampling = Sampling(per_sequence, b.steps if steps is None else steps,
                            b.strength if strength is None else strength,
                            b.guidance_scale if guidance_scale is None else guidance_scale, seed)
        inp = io.open_input(run.trained, source, ReadOptions(label_column, obs_key))
        diffusion = Diffusion.from_config(cfg.generator).to(dev)
        gen = torch.Generator().manual_seed(seed)
        chunks = inp.chunks
        if sharded:
            total = io.count_rows(run.trained, source)
            row_lo, row_hi = shard.rows(total)
            chunks = slice_chunks(chunks, row_lo, row_hi)
            sidecar_path(output).unlink(missing_ok=True)  # the shard is complete once it is back
            LOG.info("shard %s: rows %d-%d of %d -> %s", shard, row_lo, row_hi, total, output)
        step = max(1, batch_size // per_sequence)
        writer = io.positives_writer(run.trained, inp, source, output, fmt, sampling, force,
                                     inputs)
        with writer, progress("generate", total=inp.total, unit=io.progress_unit[1]) as bar:
            for chunk in chunks:
                writer.check(chunk)
                for start in range(0, len(chunk.ids), step):
                    stop = min(start + step, len(chunk.ids))
                    x = run.modality.to_model(chunk.rows[start:stop]).to(dev)
                    xk, sample = run.sample_positives(
                        diffusion, x, per_sequence, steps=sampling.steps, strength=sampling.strength,
                        guidance_scale=sampling.guidance_scale, generator=gen)
                    writer.add(chunk, start, stop, xk, sample)
                    bar.advance(stop - start)
        report_changes(inp)
        summary = writer.summary(time.perf_counter() - t0)
        if sharded:
            write_fasta_sidecar(output, {
                "config_hash": run.config_hash, "run_dir": str(Path(run_dir).resolve()),
                "source": str(source), "shard_index": shard.index, "shard_count": shard.count,
                "shard_start": row_lo, "shard_stop": row_hi, "total_rows": total,
                "per_sequence": per_sequence, "sources": summary.n_sources})
        return summary
