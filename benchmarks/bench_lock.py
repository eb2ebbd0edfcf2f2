"""What one writer per run directory costs (issue #26): the lock's share of a fit, and how fast
a second fit is refused.

1. The lock's operations on this file system: take and give back, the check before every commit
   into a locked run directory, one heartbeat.
2. A real ``fit`` (``--preset``, default ``tiny``, on the bundled 500 sequences, in this
   process) with every lock operation timed: their total against the fit's time. The main
   thread pays for taking and giving back the lock and for the commit checks; the heartbeat
   runs in its own thread (counted here anyway).
3. A second ``diffaug fit`` on a run directory whose lock is held: wall time from starting the
   process to its exit 75, against starting the CLI for ``--help``.

    make bench-lock           # or: python benchmarks/bench_lock.py --preset default --threads 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

EXAMPLE = Path(__file__).resolve().parent.parent / "resources" / "examples" / "dhs_example.fa"
DIFFAUG = [sys.executable, "-m", "diffaug_genomics_cli.main"]


def per_call(func: Callable[[], Any], n: int) -> float:
    """Mean seconds per call of ``func`` over ``n`` calls."""
    t0 = time.perf_counter()
    for _ in range(n):
        func()
    return (time.perf_counter() - t0) / n


def operations(folder: Path, n: int) -> dict[str, float]:
    from diffaug_genomics.run_lock import Lock

    target = folder / "run"

    def take_and_give_back() -> None:
        lock = Lock(target, "bench")
        lock.acquire()
        lock.release()

    held = Lock(target, "bench")
    held.acquire()
    try:
        check = per_call(held.check, n)
        renew = per_call(held.renew, n)
    finally:
        held.release()
    return {"acquire + release": per_call(take_and_give_back, n), "check (per commit)": check,
            "heartbeat (renew)": renew}


def timed_fit(folder: Path, preset: str) -> tuple[float, dict[str, list[float]]]:
    """Seconds of a whole ``fit`` and the seconds of each lock operation it made."""
    from diffaug_genomics import run_lock
    from diffaug_genomics.fit import fit

    spent: dict[str, list[float]] = defaultdict(list)
    originals = {name: getattr(run_lock.Lock, name) for name in ("acquire", "release",
                                                                 "check", "renew")}

    def timer(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return method(self, *args, **kwargs)
            finally:
                spent[name].append(time.perf_counter() - t0)
        return wrapped

    for name, method in originals.items():
        setattr(run_lock.Lock, name, timer(name, method))
    try:
        t0 = time.perf_counter()
        fit(EXAMPLE, folder / "fit", preset=preset)
        seconds = time.perf_counter() - t0
    finally:
        for name, method in originals.items():
            setattr(run_lock.Lock, name, method)
    return seconds, spent


def refusal(folder: Path, repeats: int) -> tuple[float, float]:
    """(median seconds of a refused fit, median seconds of ``diffaug fit --help``)."""
    from diffaug_genomics.run_lock import Lock

    env = {**os.environ, "DIFFAUG_NO_BAR": "1"}
    refused, helped = [], []
    with Lock(folder / "busy", "bench"):
        for _ in range(repeats):
            t0 = time.perf_counter()
            proc = subprocess.run([*DIFFAUG, "fit", str(EXAMPLE), "-o", str(folder / "busy"),
                                   "--preset", "tiny"], env=env, capture_output=True)
            refused.append(time.perf_counter() - t0)
            assert proc.returncode == 75, proc.stderr.decode()
            t0 = time.perf_counter()
            subprocess.run([*DIFFAUG, "fit", "--help"], env=env, capture_output=True, check=True)
            helped.append(time.perf_counter() - t0)
    return statistics.median(refused), statistics.median(helped)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("DIFFAUG_NO_BAR", "1")
    with tempfile.TemporaryDirectory(prefix="bench-lock-", dir=".") as tmp:
        folder = Path(tmp)
        print(f"file system of {folder.resolve()}, {args.threads} torch thread(s)")
        for name, seconds in operations(folder, 200).items():
            print(f"  {name:24s} {seconds * 1e6:9.1f} us")
        seconds, spent = timed_fit(folder, args.preset)
        total = sum(sum(v) for v in spent.values())
        main_thread = sum(sum(spent[k]) for k in ("acquire", "release", "check"))
        print(f"fit --preset {args.preset} on {EXAMPLE.name}: {seconds:.1f} s")
        for name in ("acquire", "release", "check", "renew"):
            calls = spent.get(name, [])
            print(f"  {name:8s} {len(calls):5d} calls {sum(calls) * 1e3:9.2f} ms")
        print(f"  lock, all operations: {total * 1e3:.2f} ms = {100 * total / seconds:.3f} % of "
              f"the fit ({100 * main_thread / seconds:.3f} % in the main thread)")
        refused, helped = refusal(folder, args.repeats)
        print(f"second fit refused (exit 75) after {refused:.2f} s, process start to exit "
              f"(median of {args.repeats}; `diffaug fit --help`: {helped:.2f} s)")


if __name__ == "__main__":
    main()
