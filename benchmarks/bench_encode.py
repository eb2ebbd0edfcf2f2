"""Benchmark ``encode_fasta`` against a naive and a straightforward encoder (``make bench-encode``).

Generates (seeded, cached in ./.bench/) a FASTA of >= 100 MB with 200-1000 bp records, 60-column
lines (as most genome tools write them), ~10% soft-masked (lower case) and ~0.5% N. Every case runs
in its own subprocess, which reports its wall time and peak RSS (``ru_maxrss``):

* ``ours``: :func:`diffaug_genomics.encode.encode_fasta` with ``--length 1000`` (the longest
  record, i.e. what ``--length`` omitted would choose, without the extra length-scan pass);
* ``reference``: the ~30-line straightforward encoder below (lines, numpy lookup table, chunked
  writes to an HDF5 dataset with the same codec), on the same 100 MB file;
* ``naive``: Biopython ``SeqIO`` + a per-base Python loop, on a 5 MB slice;
* ``--codecs``: the codec / chunk-size sweep behind :data:`diffaug_genomics.io.onehot_writer.COMPRESSION`
  (20 MB slice: encode time, file size, full read and random 64-row batch reads).

Usage: ``python benchmarks/bench_encode.py [--size-mb 100] [--codecs] [--skip-naive]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".bench"
LENGTH = 1000
SEED = 20240521


def generate(path: Path, size_mb: float, seed: int = SEED) -> None:
    """Write a random FASTA of ``size_mb`` MB (sequence bytes) with 200-1000 bp records."""
    rng = np.random.default_rng(seed)
    target = int(size_mb * 1e6)
    written, i = 0, 0
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        while written < target:
            lengths = rng.integers(200, 1001, size=2000)
            bases = rng.choice(np.frombuffer(b"ACGT", np.uint8), size=int(lengths.sum()))
            bases[rng.random(bases.size) < 0.005] = ord("N")
            out = []
            pos = 0
            for n in lengths.tolist():
                seq = bases[pos:pos + n]
                pos += n
                if rng.random() < 0.1:  # a soft-masked stretch
                    a = int(rng.integers(0, n // 2))
                    seq[a:a + n // 3] |= 0x20
                raw = seq.tobytes()
                lines = b"\n".join(raw[k:k + 60] for k in range(0, n, 60))
                out.append(b">seq%d synthetic length=%d\n%s\n" % (i, n, lines))
                i += 1
                written += n
            fh.write(b"".join(out))
    tmp.replace(path)


def slice_fasta(src: Path, dst: Path, size_mb: float) -> None:
    """First whole records of ``src`` up to ``size_mb`` MB of file."""
    limit = int(size_mb * 1e6)
    with open(src, "rb") as fh:
        data = fh.read(limit + 10_000)
    cut = data.find(b"\n>", limit)
    dst.write_bytes(data[: cut + 1])


# --------------------------------------------------------------------------------------------
# Cases (each run in a child process)


def case_ours(inp: Path, out: Path) -> dict:
    from diffaug_genomics.encode import encode_fasta

    summary = encode_fasta(inp, out, length=LENGTH, force=True, show_progress=False)
    return {"records": summary.records}


def case_reference(inp: Path, out: Path) -> dict:
    """The straightforward encoder: lines, numpy lookup table, chunked compressed writes."""
    import h5py

    from diffaug_genomics.io.onehot_writer import COMPRESSION

    table = np.zeros((256, 4), np.uint8)
    for i, base in enumerate(b"ACGT"):
        table[base, i] = table[base + 32, i] = 1
    table[ord("U"), 3] = table[ord("u"), 3] = 1
    with h5py.File(out, "w") as f:
        ds = f.create_dataset("onehot", (0, LENGTH, 4), np.uint8, maxshape=(None, LENGTH, 4),
                              chunks=(256, LENGTH, 4), **COMPRESSION)
        batch: list[np.ndarray] = []
        n = 0

        def flush() -> None:
            nonlocal n
            ds.resize(n + len(batch), axis=0)
            ds[n:n + len(batch)] = np.stack(batch)
            n += len(batch)
            batch.clear()

        def add(parts: list[bytes]) -> None:
            row = np.zeros((LENGTH, 4), np.uint8)
            seq = np.frombuffer(b"".join(parts)[:LENGTH], np.uint8)
            row[: len(seq)] = table[seq]
            batch.append(row)
            if len(batch) == 4096:
                flush()

        parts: list[bytes] = []
        with open(inp, "rb") as fh:
            for line in fh:
                if line.startswith(b">"):
                    if parts:
                        add(parts)
                    parts = []
                else:
                    parts.append(line.rstrip())
        add(parts)
        flush()
    return {"records": n}


def case_naive(inp: Path, out: Path) -> dict:
    """Biopython SeqIO and a per-base Python loop (what a first script often looks like)."""
    import h5py
    from Bio import SeqIO

    index = {"A": 0, "C": 1, "G": 2, "T": 3, "U": 3}
    rows = []
    for record in SeqIO.parse(str(inp), "fasta"):
        row = np.zeros((LENGTH, 4), np.uint8)
        for i, base in enumerate(str(record.seq).upper()[:LENGTH]):
            if base in index:
                row[i, index[base]] = 1
        rows.append(row)
    with h5py.File(out, "w") as f:
        f.create_dataset("onehot", data=np.stack(rows), chunks=(256, LENGTH, 4),
                         compression="gzip", compression_opts=1)
    return {"records": len(rows)}


def case_codec(inp: Path, out: Path, spec: str) -> dict:
    """Encode with one codec/chunk setting, then time full and random batch reads."""
    import h5py

    import diffaug_genomics.io.onehot_writer as h5

    codec, rows, kib = spec.split("/")
    h5.CHUNK_ROWS, h5.CHUNK_BYTES = int(rows), int(kib) << 10
    h5.COMPRESSION = {
        "none": {},
        "gzip1": {"compression": "gzip", "compression_opts": 1},
        "gzip1+shuffle": {"compression": "gzip", "compression_opts": 1, "shuffle": True},
        "gzip4": {"compression": "gzip", "compression_opts": 4},
        "lzf": {"compression": "lzf"},
    }[codec]
    t = time.perf_counter()
    res = case_ours(inp, out)
    res["encode_s"] = time.perf_counter() - t
    res["size_mb"] = out.stat().st_size / 1e6
    with h5py.File(out, "r") as f:
        ds = f["onehot"]
        t = time.perf_counter()
        for start in range(0, ds.shape[0], 4096):
            ds[start:start + 4096]
        res["read_all_s"] = time.perf_counter() - t
        rng = np.random.default_rng(0)
        t = time.perf_counter()
        for _ in range(50):
            ds[np.sort(rng.choice(ds.shape[0], 64, replace=False))]
        res["batch64_ms"] = (time.perf_counter() - t) / 50 * 1e3
    return res


def child(case: str, inp: Path, out: Path, spec: str | None) -> None:
    t = time.perf_counter()
    res = case_codec(inp, out, spec) if case == "codec" else globals()[f"case_{case}"](inp, out)
    res["seconds"] = time.perf_counter() - t
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(res))


def run_case(case: str, inp: Path, spec: str | None = None) -> dict:
    out = CACHE / f"out-{case}.h5"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, __file__, "--child", case, "--input", str(inp), "--output", str(out)]
    if spec:
        cmd += ["--spec", spec]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ,
                          "DIFFAUG_NO_BAR": "1"})
    if proc.returncode:
        raise SystemExit(f"{case} failed:\n{proc.stderr}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    size = inp.stat().st_size
    res["mb_per_s"] = size / 1e6 / res["seconds"]
    res["records_per_s"] = res["records"] / res["seconds"]
    res["input_mb"] = size / 1e6
    out.unlink(missing_ok=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=float, default=100.0)
    ap.add_argument("--codecs", action="store_true", help="also run the codec/chunk sweep")
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--child"), ap.add_argument("--input"), ap.add_argument("--output")
    ap.add_argument("--spec")
    args = ap.parse_args()
    if args.child:
        child(args.child, Path(args.input), Path(args.output), args.spec)
        return
    CACHE.mkdir(exist_ok=True)
    big = CACHE / f"bench_{args.size_mb:g}mb_seed{SEED}.fa"
    if not big.exists():
        print(f"generating {big} ...", file=sys.stderr)
        generate(big, args.size_mb)
    small = CACHE / f"slice_5mb_seed{SEED}.fa"
    if not small.exists():
        slice_fasta(big, small, 5)

    def show(name: str, res: dict) -> None:
        print(f"{name:<28} {res['input_mb']:7.1f} MB {res['records']:>8} rec "
              f"{res['seconds']:7.2f} s {res['records_per_s']:>10,.0f} rec/s "
              f"{res['mb_per_s']:7.1f} MB/s  peak RSS {res['peak_rss_mb']:6.0f} MB")

    print(f"encode_fasta benchmark, --length {LENGTH}, pad policy, 60-column FASTA")
    ours = run_case("ours", big)
    show("ours (encode_fasta)", ours)
    ref = run_case("reference", big)
    show("straightforward reference", ref)
    print(f"  ours vs reference: {ref['seconds'] / ours['seconds']:.2f}x faster")
    if not args.skip_naive:
        naive = run_case("naive", small)
        show("naive SeqIO + loop (5 MB)", naive)
        ours_small = run_case("ours", small)
        show("ours on the same 5 MB", ours_small)
        print(f"  ours vs naive (MB/s, 100 MB vs 5 MB): "
              f"{ours['mb_per_s'] / naive['mb_per_s']:.0f}x; same 5 MB slice: "
              f"{ours_small['mb_per_s'] / naive['mb_per_s']:.0f}x")
    if args.codecs:
        sweep = CACHE / f"slice_20mb_seed{SEED}.fa"
        if not sweep.exists():
            slice_fasta(big, sweep, 20)
        print("\ncodec sweep (20 MB slice; codec/max chunk rows/max chunk KiB): encode s, file MB, "
              "read-all s, random 64-row batch ms")
        for spec in ("none/256/256", "gzip1/256/256", "gzip1+shuffle/256/256", "gzip4/256/256",
                     "lzf/256/256", "gzip1/64/256", "gzip1/256/1024"):
            r = run_case("codec", sweep, spec)
            print(f"  {spec:<20} {r['encode_s']:6.2f} s {r['size_mb']:8.1f} MB "
                  f"{r['read_all_s']:6.2f} s {r['batch64_ms']:7.1f} ms  "
                  f"peak {r['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
