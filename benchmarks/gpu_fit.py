"""One ``default`` fit on one device, and the figures a GPU check reports (``gpu_check.sh``).

Fits the ``default`` preset on a FASTA or one-hot HDF5 file in this process, then prints, from
the run's ``metrics.csv``: samples/s of every phase (warm-up and encoder: pairs/s; generator:
samples/s; bank refresh: sequences/s), the fit's seconds, the peak memory (GPU: the allocator's
peak; CPU: the process's peak resident set), and the loop overhead against a bare PyTorch loop
(``bench_fit.loop_overhead``). ``--quick`` is the 30-second CPU version (512 sequences of the
bundled example, a short schedule and small batches): it checks the path, not the speed.

    python benchmarks/gpu_fit.py --data dhs_train_10000.fa --device cuda --precision bf16
    python benchmarks/gpu_fit.py --device cpu --quick
    python benchmarks/gpu_fit.py --write-data .gpu/dhs_train_10000.fa   # from the DHS cache
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

EXAMPLE = Path(__file__).resolve().parent.parent / "resources" / "examples" / "dhs_example.fa"
QUICK = ["log_every=1", "schedule.warmup_epochs=1", "schedule.rounds=1", "schedule.epochs_per_round=1",
         "generator.steps=10", "generator.batch_size=32", "bank.steps=4", "optim.batch_size=128"]
UNITS = {"warmup": "pairs/s", "encoder": "pairs/s", "generator": "samples/s", "bank": "seq/s"}


def phase_rates(metrics: Path) -> dict[str, float]:
    """Median ``samples_per_s`` of every phase's rows in ``metrics.csv`` (rows without one
    skipped)."""
    rates: dict[str, list[float]] = {}
    with open(metrics, newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("samples_per_s"):
                rates.setdefault(row["phase"], []).append(float(row["samples_per_s"]))
    return {phase: statistics.median(v) for phase, v in rates.items()}


def peak_memory_gib(device: torch.device) -> float:
    """The allocator's peak on a GPU; the process's peak resident set on a CPU (GiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def write_data(out: Path, n: int = 10_000) -> None:
    """The DHS training subsample the quality benchmark uses (``n`` sequences, seed 0)."""
    from harness import prepare

    with tempfile.TemporaryDirectory() as tmp:
        split = prepare("dhs", Path(tmp), n, 2000)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(split.train.with_suffix(".fa"), out)
    print(f"wrote {out}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="FASTA or one-hot HDF5")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--quick", action="store_true", help="the 30-second CPU version")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--write-data", type=Path, default=None,
                        help="write the 10,000-sequence DHS training FASTA here and stop")
    args = parser.parse_args()
    if args.write_data:
        write_data(args.write_data)
        return 0

    from bench_fit import loop_overhead

    from diffaug_genomics.fit import fit
    from diffaug_genomics.io.h5 import load_rows
    from diffaug_genomics.train.precision import resolve_precision

    device = torch.device(args.device)
    overrides = [f"precision={args.precision}", *(QUICK if args.quick else [])]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        data = args.data
        if data is None:
            if not args.quick:
                print("gpu_fit: --data is needed (the 10,000-sequence DHS FASTA: "
                      "--write-data FILE writes it where the DHS cache is)", file=sys.stderr)
                return 2
            data = tmp_path / "example.fa"  # the first 512 of the bundled example
            records = EXAMPLE.read_text().split(">")[1:513]
            data.write_text("".join(">" + r for r in records))
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t = time.perf_counter()
        result = fit(data, tmp_path / "run", preset="default", overrides=overrides,
                     device=args.device, seed=0)
        seconds = time.perf_counter() - t
        rates = phase_rates(result.run_dir / "metrics.csv")
        peak = peak_memory_gib(device)
        h5 = data if data.suffix in (".h5", ".hdf5") else result.run_dir / "data.h5"
        rows = load_rows(h5)[0]
        enc_ratio, gen_ratio, detail = loop_overhead(rows, overrides, tmp_path, device)
    figures = {"device": str(device), "precision": args.precision, "quick": args.quick,
               "resolved_precision": resolve_precision(result.config.precision, device),
               "fit_seconds": round(seconds, 1),
               "rates": {k: round(v, 1) for k, v in rates.items()},
               "peak_memory_gib": round(peak, 2), "loop_overhead_encoder": round(enc_ratio, 3),
               "loop_overhead_generator": round(gen_ratio, 3), "loop_overhead_detail": detail}
    print(f"gpu_fit: {device}, precision {args.precision} "
          f"({figures['resolved_precision']}): fit {seconds:.1f} s; "
          + ", ".join(f"{k} {v:.1f} {UNITS.get(k, '/s')}" for k, v in rates.items())
          + f"; peak memory {peak:.2f} GiB; loop overhead encoder {enc_ratio:.2f}x, generator "
          f"{gen_ratio:.2f}x ({detail})")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    missing = {"warmup", "generator", "bank", "encoder"} - set(rates)
    if missing:
        print(f"gpu_fit: no throughput logged for {sorted(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
