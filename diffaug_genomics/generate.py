"""``diffaug generate``: synthetic positives of each input sequence, written as FASTA.

Each source row is embedded by the run's encoder, and its conditional diffusion model samples
K positives (DDIM, optionally SDEdit-style from the noised source, with classifier-free
guidance). Bases are argmax-decoded; each positive has the source's own length.
"""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
import torch

from diffaug_genomics.alphabet import decode
from diffaug_genomics.io.atomic import atomic_output, check_output
from diffaug_genomics.progress import LOG, progress
from diffaug_genomics.shards import Shard


@dataclass
class GenerateSummary:
    n_sources: int
    n_generated: int
    identity: float
    gc_generated: float
    gc_source: float
    seconds: float
    skipped: Path | None = None

    def line(self) -> str:
        if self.skipped is not None:
            return f"{self.skipped} is complete already: skipped"
        per_k = 1000 * self.seconds / max(self.n_generated, 1)
        return (f"generated {self.n_generated} positives of {self.n_sources} sequences: mean "
                f"identity to source {self.identity:.3f}, GC {self.gc_generated:.3f} (source "
                f"{self.gc_source:.3f}), {per_k:.1f} s per 1000 sequences")


def row_offset(policy: str, length: int, own: int) -> int:
    """Where a record's own bases start in a stored row of ``length`` bp (``own`` of them)."""
    return (length - own) // 2 if policy == "center" and own < length else 0


def generate(run_dir: str | Path, source: str | Path, output: str | Path, *, per_sequence: int = 1,
             steps: int | None = None, strength: float | None = None,
             guidance_scale: float | None = None, seed: int = 0, batch_size: int = 256,
             device: str = "auto", force: bool = False,
             shard: Shard | None = None, label_column: str | None = None,
             obs_key: str | None = None, backbone: str | None = None) -> GenerateSummary:
    """Write ``per_sequence`` generated positives of every record of ``source`` to ``output``
    (FASTA; ``-`` for stdout). Sampler settings default to the run's ``bank`` configuration.

    With ``shard`` (of more than one): only the shard's rows, to its own file (see
    :mod:`diffaug_genomics.shards`), sampled with the seed :func:`shard_seed` ``(seed, i, N)``:
    reproducible for a given N, but not the draws of an unsharded run. A shard file that
    exists is complete (written atomically) and is skipped unless ``force``.

    Image and tabular runs write a ``.npy`` or ``.h5`` array instead
    (:mod:`diffaug_genomics.generate_samples`); ``backbone`` registers a third-party modality.
    """
    from diffaug_genomics.inputs import iter_chunks
    from diffaug_genomics.runs import load_run
    from diffaug_genomics.shards import count_rows, shard_seed, slice_chunks
    from diffaug_genomics.train.distributed import resolve_device

    to_stdout = str(output) == "-"
    sharded = shard is not None and shard.count > 1
    if sharded:
        if to_stdout:
            from diffaug_genomics.errors import InputError

            raise InputError("--shard writes one file per shard: give -o FILE, not -o -")
        output = shard.path(output)
        seed = shard_seed(seed, shard.index, shard.count)
    inputs = (source, run_dir)
    if not to_stdout:
        check_output(output, force or sharded, inputs)
    t0 = time.perf_counter()
    dev = resolve_device(device)
    if backbone is not None:
        from diffaug_genomics.models.registry import load_backbone

        load_backbone(backbone)
    run = load_run(run_dir, dev, with_generator=True)
    cfg = run.config
    if sharded and run.modality.io is not None:
        from diffaug_genomics.errors import InputError

        raise InputError("--shard is supported for DNA inputs only", path=source)
    if sharded and output.exists() and not force:
        from diffaug_genomics.shards import fasta_shard_state

        state = fasta_shard_state(output, run.config_hash, source, shard)
        if state == "complete":
            return GenerateSummary(0, 0, 0.0, 0.0, 0.0, 0.0, skipped=output)
        if state == "foreign":
            check_output(output, force, inputs)  # exists: --force to overwrite
        LOG.info("%s has no record of completion (interrupted?): writing it again", output)
    if run.modality.io is not None:  # images, tables: an array file, not FASTA
        from diffaug_genomics.generate_samples import generate_samples
        from diffaug_genomics.samples import ReadOptions

        b = cfg.bank
        return generate_samples(
            run, source, output, ReadOptions(label_column, obs_key), per_sequence=per_sequence,
            steps=b.steps if steps is None else steps,
            strength=b.strength if strength is None else strength,
            guidance_scale=b.guidance_scale if guidance_scale is None else guidance_scale,
            seed=seed, batch_size=batch_size, force=force, inputs=inputs)
    from diffaug_genomics.diffusion import Diffusion

    b = cfg.bank
    diffusion = Diffusion.from_config(cfg.generator).to(dev)
    steps = b.steps if steps is None else steps
    strength = b.strength if strength is None else strength
    guidance = b.guidance_scale if guidance_scale is None else guidance_scale
    gen = torch.Generator().manual_seed(seed)
    length = run.sample_shape[-1]
    policy = cfg.data.policy
    chunks = iter_chunks(source, length, policy, cfg.data.stride)
    if sharded:
        total = count_rows(source, length, policy, cfg.data.stride)
        row_lo, row_hi = shard.rows(total)
        chunks = slice_chunks(chunks, row_lo, row_hi)
        from diffaug_genomics.shards import sidecar_path

        sidecar_path(output).unlink(missing_ok=True)  # the shard is complete once it is back
        LOG.info("shard %s: rows %d-%d of %d -> %s", shard, row_lo, row_hi, total, output)
    n_src = n_gen = 0
    ident_sum = gc_gen_sum = gc_src_sum = 0.0
    with ExitStack() as stack:
        if to_stdout:
            out: TextIO = sys.stdout
        else:
            tmp = stack.enter_context(atomic_output(output, force, inputs))
            out = stack.enter_context(open(tmp, "w"))
        bar = stack.enter_context(progress("generate", unit="seq"))
        for chunk in chunks:
            if chunk.onehot.shape[1] != length:
                from diffaug_genomics.errors import InputError

                raise InputError(f"rows are {chunk.onehot.shape[1]} bp but the run was trained "
                                 f"on {length} bp", path=source)
            for start in range(0, len(chunk.ids), max(1, batch_size // per_sequence)):
                stop = min(start + max(1, batch_size // per_sequence), len(chunk.ids))
                rows = chunk.onehot[start:stop]
                x = run.modality.to_model(rows).to(dev)
                _, sample = run.sample_positives(diffusion, x, per_sequence, steps=steps,
                                                 strength=strength, guidance_scale=guidance,
                                                 generator=gen)
                gen_onehot = sample.permute(0, 2, 1).cpu().numpy()  # (n*K, L, 4) scores
                seqs = decode(gen_onehot)
                for i in range(stop - start):
                    sid, own = chunk.ids[start + i], int(chunk.lengths[start + i])
                    off = row_offset(chunk.policy, length, own)
                    src = decode(rows[i])[off:off + own]
                    for k in range(per_sequence):
                        s = seqs[i * per_sequence + k][off:off + own]
                        out.write(f">{sid}|pos{k} source={sid} steps={steps} strength={strength:g}\n{s}\n")
                        ident_sum += _identity(s, src)
                        gc_gen_sum += _gc(s)
                        gc_src_sum += _gc(src)
                        n_gen += 1
                n_src += stop - start
                bar.advance(stop - start)
        out.flush()
    if sharded:
        from diffaug_genomics.shards import write_fasta_sidecar

        write_fasta_sidecar(output, {
            "config_hash": run.config_hash, "run_dir": str(Path(run_dir).resolve()),
            "source": str(source), "shard_index": shard.index, "shard_count": shard.count,
            "shard_start": row_lo, "shard_stop": row_hi, "total_rows": total,
            "per_sequence": per_sequence, "sources": n_src})
    return GenerateSummary(n_src, n_gen, ident_sum / max(n_gen, 1), gc_gen_sum / max(n_gen, 1),
                           gc_src_sum / max(n_gen, 1), time.perf_counter() - t0)


def _identity(a: str, b: str) -> float:
    if not a:
        return 1.0
    x, y = np.frombuffer(a.encode(), np.uint8), np.frombuffer(b.encode(), np.uint8)
    return float((x == y).mean())


def _gc(s: str) -> float:
    called = sum(s.count(c) for c in "ACGT")
    return (s.count("G") + s.count("C")) / called if called else 0.0
