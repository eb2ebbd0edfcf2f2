"""A fit on a shared machine: wall time of ``diffaug fit`` idle and next to a competing process
that keeps one core busy, with the threads PyTorch would take by itself (every usable CPU:
what ``fit`` did before ``--threads``) and with the default choice
(:mod:`diffaug_genomics.threads`). Target: the default ``tiny`` fit under the load within 1.5x
of its idle time.

    make bench-fit                       # runs this after bench_fit.py
    python benchmarks/bench_threads.py [--presets tiny,default] [--repeat 1]

Each fit is a fresh ``diffaug fit`` process on the bundled 500 x 200 bp example; the
``default`` line is shortened to one warm-up epoch and one round of 100 generator steps and
one encoder epoch (its models and batch sizes are the preset's). On a machine other people
use, "idle" includes their load: the numbers are comparable within one run of this script.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "resources" / "examples" / "dhs_example.fa"
SHORT_DEFAULT = ["schedule.warmup_epochs=1", "schedule.rounds=1", "schedule.epochs_per_round=1",
                 "generator.steps=100"]


def fit_seconds(preset: str, threads: int | None, tmp: Path, limit_s: float | None = None
                ) -> float:
    """Wall seconds of one ``diffaug fit`` process (``threads`` None: the default choice);
    ``inf`` when it runs past ``limit_s``."""
    out = tmp / f"run-{preset}-{threads}-{time.monotonic_ns()}"
    cmd = [sys.executable, "-m", "diffaug_genomics_cli.main", "fit", str(EXAMPLE), "-o", str(out),
           "--preset", preset, "--seed", "0"]
    if preset == "default":
        cmd += [a for key in SHORT_DEFAULT for a in ("--set", key)]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "DIFFAUG_THREADS")}
    env["DIFFAUG_NO_BAR"] = "1"
    t0 = time.perf_counter()
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=limit_s)
    except subprocess.TimeoutExpired:
        return float("inf")
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"fit failed ({done.returncode}): {done.stderr[-2000:]}")
    for line in done.stderr.splitlines():
        if "WARNING" in line and "thread" in line:
            print(f"    [{preset}, threads={threads or 'default'}] {line.split('WARNING', 1)[1].strip()}")
    return seconds


def busy_loop() -> subprocess.Popen:
    """A competing process that keeps one core busy until killed."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main() -> None:
    from diffaug_genomics.threads import usable_cpus

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="tiny,default")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--before-limit", type=float, default=600.0,
                        help="seconds after which a 'before' fit is stopped (reported as >)")
    args = parser.parse_args()
    cpus = usable_cpus()
    print(f"usable CPUs {cpus} (os.cpu_count() {os.cpu_count()}); fit of {EXAMPLE.name}")
    print(f"{'preset':<8} {'setting':<34} {'seconds':>8} {'vs idle':>8}")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for preset in args.presets.split(","):
            def best(threads: int | None, loaded: bool, preset: str = preset,
                     limit: float | None = None) -> float:
                times = []
                for _ in range(args.repeat):
                    load = busy_loop() if loaded else None
                    try:
                        time.sleep(0.5 if loaded else 0.0)
                        times.append(fit_seconds(preset, threads, tmp, limit))
                    finally:
                        if load is not None:
                            load.kill()
                            load.wait()
                return min(times)

            idle = best(None, False)
            print(f"{preset:<8} {'idle, default threads':<34} {idle:8.1f} {1.0:8.2f}")
            after = best(None, True)
            print(f"{preset:<8} {'1 busy core, default threads':<34} {after:8.1f} "
                  f"{after / idle:8.2f}")
            before = best(cpus, True, limit=args.before_limit)
            shown = (f"{before:8.1f} {before / idle:8.2f}" if before != float("inf") else
                     f"{'>' + format(args.before_limit, '.0f'):>8} "
                     f"{'>' + format(args.before_limit / idle, '.1f'):>8}")
            print(f"{preset:<8} {f'1 busy core, --threads {cpus} (before)':<34} {shown}")
            if preset == "tiny":
                verdict = "meets" if after <= 1.5 * idle else "misses"
                print(f"         target: loaded default within 1.5x of idle: {verdict} "
                      f"({after / idle:.2f}x)")


if __name__ == "__main__":
    main()
