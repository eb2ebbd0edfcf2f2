"""One ``default`` fit on one device, and the figures a GPU check reports (``gpu_check.sh``).

Fits the ``default`` preset on a FASTA or one-hot HDF5 file (``--data``), or on ``--n``
sequences resampled from the bundled DHS example on this machine from a seed
(``scale_data.py``: 1,000,000 in the GPU check), in this process, then prints, from the run's
``metrics.csv``: samples/s of every phase (warm-up and encoder: pairs/s; generator: samples/s;
bank refresh: sequences/s), the fit's seconds end to end (data generation apart), the peak GPU
memory (the allocator's peak) and the peak host memory (the process's peak resident set), the
precision and batch scale the run chose, and the loop overhead against a bare PyTorch loop
(``bench_fit.loop_overhead``; with ``--n``, on the first 65,536 rows at the run's batches).
``--time-limit S`` stops the fit after S seconds the way a cluster does (a signal: it
checkpoints and stops) and reports what it measured until then. ``--quick`` is the short CPU
version (512 sequences of the bundled example or ``--n`` resampled ones, a short schedule and
small batches): it checks the path, not the speed.

    python benchmarks/gpu_fit.py --data dhs_train_10000.fa --device cuda --precision bf16
    python benchmarks/gpu_fit.py --n 1000000 --device cuda --time-limit 240
    python benchmarks/gpu_fit.py --device cpu --quick [--n 3000]
    python benchmarks/gpu_fit.py --write-data .gpu/dhs_train_10000.fa   # from the DHS cache
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import signal
import statistics
import sys
import tempfile
import threading
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
    parser.add_argument("--n", type=int, default=None,
                        help="fit on this many resampled sequences (scale_data.py) instead")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--quick", action="store_true", help="the short CPU version")
    parser.add_argument("--compile-mode", default=None,
                        help="fit with compile: true in this torch.compile mode (e.g. "
                             "reduce-overhead: CUDA graphs), to compare with an eager fit")
    parser.add_argument("--time-limit", type=float, default=None,
                        help="stop the fit (checkpoint, signal) after this many seconds")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--write-data", type=Path, default=None,
                        help="write the 10,000-sequence DHS training FASTA here and stop")
    args = parser.parse_args()
    if args.write_data:
        write_data(args.write_data)
        return 0

    device = torch.device(args.device)
    overrides = [f"precision={args.precision}", *(QUICK if args.quick else [])]
    if args.compile_mode:
        os.environ["DIFFAUG_COMPILE_MODE"] = args.compile_mode
        overrides.append("compile=true")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        data, made = input_file(args, tmp_path)
        if data is None:
            return 2
        figures = fit_and_measure(data, overrides, tmp_path, device, args.time_limit,
                                  turns=1 if args.quick else 3)
    figures.update({"precision": args.precision, "quick": args.quick, "n": args.n,
                    "data_seconds": round(made, 1), "compile_mode": args.compile_mode})
    print(summary(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    missing = {"warmup", "generator", "bank", "encoder"} - set(figures["rates"])
    if missing and not figures["stopped"]:
        print(f"gpu_fit: no throughput logged for {sorted(missing)}", file=sys.stderr)
        return 1
    return 0


def input_file(args: argparse.Namespace, tmp: Path) -> tuple[Path | None, float]:
    """The file to fit (``--data``; ``--n`` resampled sequences; with ``--quick``, the first
    512 of the bundled example) and the seconds it took to make."""
    t = time.perf_counter()
    if args.n is not None:
        from scale_data import write_h5

        return write_h5(tmp / f"resampled_{args.n}.h5", args.n), time.perf_counter() - t
    if args.data is not None:
        return args.data, 0.0
    if not args.quick:
        print("gpu_fit: --data or --n is needed (the 10,000-sequence DHS FASTA: --write-data "
              "FILE writes it where the DHS cache is)", file=sys.stderr)
        return None, 0.0
    data = tmp / "example.fa"  # the first 512 of the bundled example
    records = EXAMPLE.read_text().split(">")[1:513]
    data.write_text("".join(">" + r for r in records))
    return data, time.perf_counter() - t


def fit_and_measure(data: Path, overrides: list[str], tmp: Path, device: torch.device,
                    time_limit: float | None, turns: int = 3) -> dict:
    """Fit ``default`` on ``data``; the figures of the run (see the module docstring), the
    bare-loop ratios the fastest of ``turns`` turns."""
    import yaml
    from bench_fit import loop_overhead

    from diffaug_genomics.fit import Preempted, fit
    from diffaug_genomics.io.h5 import load_rows

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    timer = None
    if time_limit:  # the way a cluster stops a job: a signal, then a checkpoint
        timer = threading.Timer(time_limit, os.kill, (os.getpid(), signal.SIGUSR1))
        timer.daemon = True
        timer.start()
    run_dir, stopped = tmp / "run", False
    t = time.perf_counter()
    try:
        fit(data, run_dir, preset="default", overrides=overrides, device=str(device), seed=0)
    except Preempted:
        stopped = True
    seconds = time.perf_counter() - t
    if timer is not None:
        timer.cancel()
    rates = phase_rates(run_dir / "metrics.csv")
    gpu_peak = (torch.cuda.max_memory_allocated(device) / 2**30
                if device.type == "cuda" else float("nan"))
    host_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    record = yaml.safe_load((run_dir / "config.yaml").read_text())
    scaling = record.get("resolved_batch_scaling", {})
    # the bare-loop ratios at the run's own batches, on at most 65,536 rows
    h5 = data if data.suffix in (".h5", ".hdf5") else run_dir / "data.h5"
    rows = load_rows(h5)[0][:65_536]
    batches = [f"{k}={v}" for k, v in scaling.items() if k.endswith("batch_size")]
    batches += [f"{k}={v}" for k, v in scaling.items() if k.endswith(".lr")]
    enc_ratio, gen_ratio, detail = loop_overhead(
        rows, [*overrides, *batches, "batch_scaling=fixed",
               f"precision={record.get('resolved_precision', 'fp32')}"], tmp, device, turns)
    return {"device": str(device), "resolved_precision": record.get("resolved_precision"),
            "precision_decision": record.get("precision_decision", {}).get("reason"),
            "batch_scaling": scaling, "fit_seconds": round(seconds, 1), "stopped": stopped,
            "rates": {k: round(v, 1) for k, v in rates.items()},
            "peak_gpu_memory_gib": round(gpu_peak, 2), "peak_host_memory_gib": round(host_peak, 2),
            "loop_overhead_encoder": round(enc_ratio, 3),
            "loop_overhead_generator": round(gen_ratio, 3), "loop_overhead_detail": detail}


def summary(f: dict) -> str:
    """One line of figures."""
    rows = f"{f['n']:,} resampled sequences, " if f.get("n") else ""
    stopped = " (STOPPED at the time limit: the rates are of what ran)" if f["stopped"] else ""
    scale = f["batch_scaling"].get("multiplier", 1)
    return (f"gpu_fit: {f['device']}, {rows}precision {f['precision']} "
            f"({f['resolved_precision']}), batches x{scale}: fit {f['fit_seconds']:.1f} s{stopped}; "
            + ", ".join(f"{k} {v:.1f} {UNITS.get(k, '/s')}" for k, v in f["rates"].items())
            + f"; peak GPU memory {f['peak_gpu_memory_gib']:.2f} GiB, peak host memory "
            f"{f['peak_host_memory_gib']:.2f} GiB; loop overhead encoder "
            f"{f['loop_overhead_encoder']:.2f}x, generator {f['loop_overhead_generator']:.2f}x "
            f"({f['loop_overhead_detail']})")


if __name__ == "__main__":
    sys.exit(main())
