"""How every per-row step of ``encode``, ``fit`` and ``embed`` grows with N, in time and host memory.

For each N (default 10^4, 10^5, 10^6) it writes N resampled 200 bp sequences as FASTA
(``scale_data.py``), then runs, each in its own process on ONE thread (``OMP_NUM_THREADS=1``,
``torch.set_num_threads(1)``, one HDF5 compression thread): ``encode`` (FASTA -> one-hot HDF5),
``fit`` of the ``default`` preset with the reduced schedule :data:`REDUCED`, and ``embed`` of the
training file. Times are CPU seconds of the process (``time.process_time``: on a machine
shared with other work, wall time says more about the neighbours than about the code).
Inside ``fit`` every phase is timed (its own time, nested phases excluded) and its peak
resident set size (RSS, sampled every 5 ms) recorded: loading the rows, the warm-up's
neighbour search (features included), the diagnostics, the conditions (embeddings of every row),
the bank refresh, the encoder and generator steps, the checkpoints. The table goes to
``--out`` (``benchmarks/results/scale.md``) with, per phase, the growth from one N to the next
against ``N log N``'s; the figures also go to ``--json``.

``--recall`` also measures the approximate neighbour search (used above 50,000 rows) against
the exact one at sizes where exact search is affordable.

    make bench-scale                      # 10^4, 10^5, 10^6: about an hour of one CPU core
    python benchmarks/bench_scale.py --sizes 10000 100000 --recall
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

REDUCED = ["schedule.warmup_epochs=1", "schedule.rounds=1", "schedule.epochs_per_round=1",
           "generator.steps=20", "generator.steps_per_checkpoint=20", "bank.steps=2",
           "bank.guidance_scale=1"]
"""The reduced schedule: one warm-up epoch, one round of 20 generator steps, one bank refresh
(DDIM with 2 steps at SDEdit strength 0.7, without guidance: one model evaluation per
sequence, where the preset's 10 guided steps make 14) and one encoder epoch; the ``default``
preset's models, batches and everything else. Chosen so that the 10^6-row fit takes well under
an hour of one CPU core."""

PHASES = {  # the loop's phase function (or "loading") -> the row of the table
    "loading": "loading the rows (HDF5)",
    "_ensure_neighbours": "neighbour search (features + kNN)",
    "warmup": "warm-up epoch (kNN-mixup)",
    "_generator_block": "generator steps (20)",
    "_embed_all": "conditions (embeddings of every row)",
    "_refresh_bank": "bank refresh",
    "encoder": "encoder epoch (bank positives)",
    "diagnostics": "diagnostics (and batch-norm recalibration)",
    "save_checkpoint": "checkpoints",
}
DIAGNOSTICS = (("loop", "encoder_diagnostics"), ("loop", "recalibrate"),
               ("loop", "generator_diagnostics"), ("bank", "bank_diagnostics"))
"""The diagnostics functions, each where the loop calls it (module of ``train``, name)."""
ORDER = ["encode", *PHASES, "fit", "embed"]
LABELS = {"encode": "`diffaug encode` (FASTA -> HDF5)", **PHASES, "fit": "`fit`, whole",
          "embed": "`diffaug embed`"}


class RssWatch(threading.Thread):
    """Samples this process's resident set size every 5 ms; :meth:`begin` / :meth:`end` give the
    peak over a window (windows may nest)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.windows: dict[int, int] = {}
        self.lock = threading.Lock()
        self.keys = itertools.count()
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.start()

    def rss(self) -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * self.page

    def run(self) -> None:
        while True:
            now = self.rss()
            with self.lock:
                for key, peak in self.windows.items():
                    self.windows[key] = max(peak, now)
            time.sleep(0.005)

    def begin(self) -> int:
        key = next(self.keys)
        with self.lock:
            self.windows[key] = self.rss()
        return key

    def end(self, key: int) -> int:
        with self.lock:
            return max(self.windows.pop(key), self.rss())


class PhaseClock:
    """Own time (nested phases excluded) and peak RSS of named phases."""

    def __init__(self, watch: RssWatch) -> None:
        self.watch, self.stack = watch, []
        self.seconds: dict[str, float] = {}
        self.peak: dict[str, int] = {}

    def wrap(self, fn, name_of):  # noqa: ANN001, ANN201
        def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            name = name_of(*args, **kwargs)
            key, t = self.watch.begin(), time.process_time()
            self.stack.append(0.0)
            try:
                return fn(*args, **kwargs)
            finally:
                total = time.process_time() - t
                nested = self.stack.pop()
                if self.stack:
                    self.stack[-1] += total
                self.seconds[name] = self.seconds.get(name, 0.0) + total - nested
                self.peak[name] = max(self.peak.get(name, 0), self.watch.end(key))
        return wrapper


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)
    import diffaug_genomics.io.onehot_writer as h5

    h5.WRITER_THREADS = 1


def child_encode(fasta: str, h5: str) -> dict:
    from diffaug_genomics.encode import encode_fasta

    t = time.process_time()
    encode_fasta(fasta, h5, length=200, policy="center", show_progress=False)
    return {"encode": {"s": time.process_time() - t}}


def child_fit(h5: str, run: str) -> dict:
    from diffaug_genomics.fit import fit
    from diffaug_genomics.modalities.sequences import SequenceIO
    from diffaug_genomics.train import bank, loop, state

    clock = PhaseClock(RssWatch())
    SequenceIO.training_data = clock.wrap(SequenceIO.training_data, lambda *a, **k: "loading")
    for owner, name, key in ((loop, "find_neighbours", "_ensure_neighbours"),
                             (loop, "generator_block", "_generator_block"),
                             (state.Setup, "embed_all", "_embed_all"),
                             (loop, "refresh_bank", "_refresh_bank"),
                             (loop.Trainer, "save_checkpoint", "save_checkpoint")):
        setattr(owner, name, clock.wrap(getattr(owner, name), lambda *a, k=key, **kw: k))
    loop.encoder_epoch = clock.wrap(loop.encoder_epoch, lambda *a: a[3].kind)  # (.., stage, seed)
    modules = {"loop": loop, "bank": bank}
    for module, name in DIAGNOSTICS:
        owner = modules[module]
        setattr(owner, name, clock.wrap(getattr(owner, name), lambda *a, **k: "diagnostics"))
    key, t, wall = clock.watch.begin(), time.process_time(), time.perf_counter()
    result = fit(h5, run, preset="default", overrides=REDUCED, device="cpu", seed=0)
    seconds, peak = time.process_time() - t, clock.watch.end(key)
    wall = time.perf_counter() - wall
    out = {name: {"s": clock.seconds[name], "peak_rss": clock.peak[name]}
           for name in clock.seconds}
    out["fit"] = {"s": seconds, "wall_s": wall, "peak_rss": peak,
                  "precision": str(result.config.precision)}
    return out


def child_embed(run: str, h5: str, out: str) -> dict:
    from diffaug_genomics.embed import embed

    t = time.process_time()
    embed(run, h5, out, device="cpu")
    return {"embed": {"s": time.process_time() - t}}


def run_child(step: str, *args: str) -> dict:
    """Run ``step`` in a fresh one-thread process; its figures, with its peak RSS."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "DIFFAUG_NO_BAR": "1"}
    proc = subprocess.run([sys.executable, __file__, "--child", step, *args], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"bench_scale: {step} failed:\n{proc.stderr[-3000:]}")
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    if "peak_rss" not in figures[step]:
        figures[step]["peak_rss"] = figures.pop("_maxrss")
    else:
        figures.pop("_maxrss")
    return figures


def child_main(step: str, args: list[str]) -> None:
    import resource

    _one_thread()
    figures = {"encode": child_encode, "fit": child_fit, "embed": child_embed}[step](*args)
    figures["_maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(figures))


def measure(n: int, work: Path) -> dict:
    """Every step at ``n`` rows: ``{phase: {"s": seconds, "peak_rss": bytes}}``."""
    from scale_data import write_fasta

    fasta, h5, run = work / f"r{n}.fa", work / f"r{n}.h5", work / f"run{n}"
    write_fasta(fasta, n)
    figures = run_child("encode", str(fasta), str(h5))
    fasta.unlink()
    print(f"  {n}: encode {figures['encode']['s']:.1f} s", flush=True)
    figures.update(run_child("fit", str(h5), str(run)))
    print(f"  {n}: fit {figures['fit']['s']:.1f} s, peak RSS "
          f"{figures['fit']['peak_rss'] / 2**30:.2f} GiB", flush=True)
    figures.update(run_child("embed", str(run), str(h5), str(work / f"emb{n}.h5")))
    print(f"  {n}: embed {figures['embed']['s']:.1f} s", flush=True)
    return figures


def recall_rows(sizes: list[int]) -> list[dict]:
    """The approximate search against the exact one: recall of the 10 exact neighbours and the
    mean cosine similarity of the found neighbours over the exact ones', with both times; on
    resampled rows of each size, and on the DHS training split when it is in the cache."""
    import numpy as np
    from scale_data import resampled_chunks

    from diffaug_genomics.positives.knn import knn_indices, neighbour_features
    from diffaug_genomics.positives.neighbour_search import approximate_knn

    def one(name: str, rows: np.ndarray) -> dict:
        feats = neighbour_features(rows, "kmer", kmer_k=4)
        t = time.process_time()
        exact = knn_indices(feats, 10)
        t_exact = time.process_time() - t
        t = time.process_time()
        found = approximate_knn(neighbour_features(rows, "kmer", kmer_k=4, compact=True), 10)
        t_approx = time.process_time() - t
        unit = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)

        def sim(nb: np.ndarray) -> float:
            return float(np.mean([(unit[i:i + 4096, None] * unit[nb[i:i + 4096]]).sum(-1).mean()
                                  for i in range(0, len(nb), 4096)]))

        recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact, strict=True)]))
        return {"data": name, "n": len(rows), "recall10": recall,
                "similarity_ratio": sim(found) / sim(exact), "exact_s": t_exact,
                "approx_s": t_approx}

    eye = np.eye(4, dtype=np.uint8)
    out = []
    for n in sizes:
        out.append(one("resampled", np.concatenate([eye[b] for b in resampled_chunks(n, 0)])))
        print(f"  recall {out[-1]}", flush=True)
    from diffaug_genomics.datasets import default_cache_dir

    dhs = default_cache_dir() / "dhs" / "train.fa"
    if dhs.is_file():
        from diffaug_genomics.alphabet import one_hot

        seqs = [s.strip() for s in dhs.read_text().splitlines() if s and s[0] != ">"]
        rows = np.stack([one_hot(s[:200].ljust(200, "N")) for s in seqs])
        out.append(one("DHS training split", rows))
        print(f"  recall {out[-1]}", flush=True)
    return out


def growth(a: float, b: float, na: int, nb: int) -> str:
    """``b / a`` and the N log N ratio it is held against."""
    if a <= 0:
        return "-"
    nlogn = nb * math.log(nb) / (na * math.log(na))
    return f"{b / a:.1f}x ({'ok' if b / a <= 1.25 * nlogn else 'OVER'})"


def table(results: dict[int, dict], recall: list[dict]) -> str:
    sizes = sorted(results)
    gib = 2**30
    lines = ["| step | " + " | ".join(f"{n:,}: CPU s (peak RSS GiB)" for n in sizes) + " | "
             + " | ".join(f"growth {a:,} -> {b:,}" for a, b in zip(sizes, sizes[1:], strict=False)) + " |",
             "|---" * (1 + len(sizes) + len(sizes) - 1) + "|"]
    for phase in ORDER:
        if not all(phase in results[n] for n in sizes):
            continue
        cells = []
        for n in sizes:
            f = results[n][phase]
            cells.append(f"{f['s']:.1f} ({f['peak_rss'] / gib:.2f})")
        grow = [growth(results[a][phase]["s"], results[b][phase]["s"], a, b)
                for a, b in zip(sizes, sizes[1:], strict=False)]
        lines.append(f"| {LABELS[phase]} | " + " | ".join(cells + grow) + " |")
    nlogn = [f"{b * math.log(b) / (a * math.log(a)):.1f}x" for a, b in zip(sizes, sizes[1:], strict=False)]
    lines.append("| *N log N would grow* | " + " | ".join([""] * len(sizes) + nlogn) + " |")
    mem = ["", "| N | one-hot data (N x 200 x 4 B) | peak RSS of fit | 2 x data + constant "
           f"(constant = peak at {sizes[0]:,} - 2 x its data) | within |", "|---|---|---|---|---|"]
    base = results[sizes[0]]["fit"]["peak_rss"] - 2 * sizes[0] * 800
    for n in sizes:
        data, peak = n * 800, results[n]["fit"]["peak_rss"]
        bound = 2 * data + base
        mem.append(f"| {n:,} | {data / gib:.2f} GiB | {peak / gib:.2f} GiB | {bound / gib:.2f} GiB "
                   f"| {'yes' if peak <= bound * 1.05 else 'NO'} |")
    lines += mem
    if recall:
        lines += ["", "| data | N | recall of the 10 exact neighbours | mean similarity, found / "
                  "exact | exact s | approximate s |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['data']} | {r['n']:,} | {r['recall10']:.3f} | {r['similarity_ratio']:.3f} "
                  f"| {r['exact_s']:.1f} | {r['approx_s']:.1f} |" for r in recall]
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child_main(sys.argv[2], sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--recall", action="store_true",
                        help="also the approximate neighbour search against the exact one")
    parser.add_argument("--recall-sizes", type=int, nargs="+", default=[10_000, 50_000, 100_000])
    parser.add_argument("--out", type=Path, default=None, help="write the table here (markdown)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the data and runs go (default: a temporary directory)")
    args = parser.parse_args()
    results: dict[int, dict] = {}
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for n in args.sizes:
            print(f"bench_scale: {n:,} rows, one thread", flush=True)
            results[n] = measure(n, Path(tmp))
            if args.json:  # after every size: a long run keeps what it measured
                args.json.write_text(json.dumps({str(k): v for k, v in results.items()},
                                                indent=1))
    recall = []
    if args.recall:
        _one_thread()
        recall = recall_rows(args.recall_sizes)
    text = table(results, recall)
    print(text)
    if args.out:
        write_report(args.out, text)


HEADER = """# Scale: every per-row step against N

Written by `benchmarks/bench_scale.py` (`make bench-scale`); the text after "## Notes" is kept
when it is run again. Data: N resampled 200 bp sequences (`benchmarks/scale_data.py`: pieces of
the 500 bundled DHS sequences, recombined and mutated). Each step runs in its own process on
ONE thread. `fit`: the `default` preset with the reduced schedule {reduced}.
Times are CPU seconds (the machine is shared), each phase's own (nested phases excluded);
"peak RSS" is the process's peak resident set while the phase ran. The growth column divides the larger N's time by the smaller's and
says "ok" when it is at most 1.25 x the growth of N log N.

"""


def write_report(path: Path, table_text: str) -> None:
    """``HEADER``, the table, and what followed "## Notes" in the file already."""
    notes = ""
    if path.is_file() and "## Notes" in path.read_text():
        notes = "\n## Notes" + path.read_text().split("## Notes", 1)[1]
    path.write_text(HEADER.format(reduced=" ".join(f"`{o}`" for o in REDUCED))
                    + table_text + notes)


if __name__ == "__main__":
    main()
