"""Are runs bit-identical across a change of the code? A recorded check (issue #24).

``record`` runs ``make demo``'s computing commands (encode, fit --preset tiny --seed 0, embed,
generate) and a shortened ``default`` fit of the DHS example (one warm-up epoch, one round of
one epoch, 20 generator steps, 2 bank sampler steps), on one thread, then writes a fingerprint
of everything they wrote: SHA-256 of every tensor in every ``.pt`` file, every dataset in every
HDF5 file and every FASTA byte, the ``metrics.csv`` values without its timing column, and the
``config.yaml`` records without times, threads and host; it keeps one digest of each file's
fingerprint (``--detail``: the fingerprints themselves, tensor by tensor). ``compare`` runs the
same commands on the code checked out now and lists every difference against a recorded
fingerprint (exit 1): the files that differ, and with a ``--detail`` record where in them.

    python benchmarks/run_identity.py record  benchmarks/results/run_identity.json
    python benchmarks/run_identity.py compare benchmarks/results/run_identity.json

Fingerprints depend on the machine and the torch build: compare on the machine that recorded.
The precisions are given explicitly (``precision: auto`` decides by a timing measurement).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "resources" / "examples" / "dhs_example.fa"
LABELS = ROOT / "resources" / "examples" / "dhs_example_labels.tsv"
SHORT_DEFAULT = ["--set", "schedule.warmup_epochs=1", "--set", "schedule.rounds=1",
                 "--set", "schedule.epochs_per_round=1", "--set", "generator.steps=20",
                 "--set", "bank.steps=2"]
VOLATILE_KEYS = {"time_s", "started", "finished", "start", "end", "seconds", "wall_s", "host",
                 "hostname", "pid", "threads", "command", "argv", "created", "version",
                 "elapsed_s", "date", "input", "input_sha256", "python"}
"""Record keys left out: times, the machine, paths of the temporary directory, the HDF5 input's
checksum (its bytes hold creation times) and Python's ``random`` state (seeded by the OS, and
used by nothing a run computes)."""


def commands(out: Path) -> list[list[str]]:
    """The commands, in order (``diffaug`` arguments)."""
    return [
        ["encode", str(EXAMPLE), "-o", str(out / "example.h5"), "--length", "200",
         "--labels", str(LABELS)],
        ["fit", str(out / "example.h5"), "-o", str(out / "run"), "--preset", "tiny",
         "--seed", "0", "--precision", "bf16"],
        ["embed", str(out / "run"), str(out / "example.h5"), "-o", str(out / "embeddings.h5")],
        ["generate", str(out / "run"), str(EXAMPLE), "-o", str(out / "positives.fa"),
         "--per-sequence", "2"],
        ["fit", str(EXAMPLE), "-o", str(out / "default"), "--seed", "0", "--precision", "fp32",
         *SHORT_DEFAULT],
    ]


def run_all(out: Path) -> None:
    """Run :func:`commands` on one thread into ``out``."""
    env = dict(os.environ, OMP_NUM_THREADS="1", DIFFAUG_THREADS="1", DIFFAUG_NO_BAR="1",
               DIFFAUG_TUNING_CACHE=str(out / "tuning"))
    exe = Path(sys.executable).parent / "diffaug"
    for args in commands(out):
        print("diffaug", " ".join(args), flush=True)
        subprocess.run([str(exe), *args], check=True, env=env, stdout=subprocess.DEVNULL)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:24]


def _tree(value: Any) -> Any:
    """A JSON-able fingerprint of a checkpoint's contents: tensors and arrays by digest."""
    import numpy as np
    import torch

    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        raw = t.reshape(-1).view(torch.uint8) if t.dtype != torch.bool else t.to(torch.uint8)
        return f"{t.dtype}{list(t.shape)}:{_digest(raw.numpy().tobytes())}"
    if isinstance(value, np.ndarray) and value.dtype == object:
        return f"object{list(value.shape)}:{_digest(repr(value.tolist()).encode())}"
    if isinstance(value, np.ndarray):
        return f"{value.dtype}{list(value.shape)}:{_digest(value.tobytes())}"
    if isinstance(value, dict):
        return {str(k): _tree(v) for k, v in value.items() if str(k) not in VOLATILE_KEYS}
    if isinstance(value, (list, tuple)):
        return [_tree(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return _digest(bytes(value))
    if isinstance(value, float) and value != value:
        return "nan"
    return value


def _h5(path: Path) -> dict[str, str]:
    import h5py

    found: dict[str, str] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            found[name] = _tree(obj[()]) if obj.shape != () else repr(obj[()])
    with h5py.File(path, "r") as fh:
        fh.visititems(visit)
    return found


def _metrics(path: Path) -> list[list[str]]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    drop = {i for i, name in enumerate(rows[0]) if name in ("time_s", "samples_per_s")}
    return [[c for i, c in enumerate(row) if i not in drop] for row in rows]


def _yaml(path: Path) -> Any:
    import yaml

    return _tree(yaml.safe_load(path.read_text()))


def fingerprint(out: Path) -> dict[str, Any]:
    """Everything the commands wrote, by relative path (the log and locks left out)."""
    import torch

    found: dict[str, Any] = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        rel = str(path.relative_to(out))
        if rel.startswith("tuning") or path.name in ("log.txt",) or path.suffix == ".lock":
            continue
        if path.suffix == ".pt":
            found[rel] = _tree(torch.load(path, map_location="cpu", weights_only=True))
        elif path.suffix == ".h5":
            found[rel] = _h5(path)
        elif path.name == "metrics.csv":
            found[rel] = _metrics(path)
        elif path.suffix in (".yaml", ".yml"):
            found[rel] = _yaml(path)
        elif path.suffix == ".npz":
            import numpy as np

            with np.load(path) as z:
                found[rel] = {k: _tree(z[k]) for k in sorted(z.files)}
        else:
            found[rel] = _digest(path.read_bytes())
    return found


def digest_of(fingerprint: Any) -> str:
    """One digest of a file's fingerprint (what a record without ``--detail`` keeps)."""
    return _digest(json.dumps(fingerprint, sort_keys=True, default=str).encode())


def differences(old: Any, new: Any, where: str = "") -> list[str]:
    """Where two fingerprints differ (paths into them)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = [f"{where}/{k}: only before" for k in old if k not in new]
        out += [f"{where}/{k}: only after" for k in new if k not in old]
        for k in old:
            if k in new:
                out += differences(old[k], new[k], f"{where}/{k}")
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [d for i, (a, b) in enumerate(zip(old, new, strict=True)) for d in differences(a, b, f"{where}[{i}]")]
    return [] if old == new else [f"{where}: {str(old)[:80]} -> {str(new)[:80]}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["record", "compare"])
    parser.add_argument("fingerprint", type=Path)
    parser.add_argument("--keep", type=Path, help="run in this directory and keep it")
    parser.add_argument("--detail", action="store_true",
                        help="record: keep every file's fingerprint, not only its digest")
    parser.add_argument("--no-run", action="store_true",
                        help="fingerprint what an earlier --keep left, without running")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        if not args.no_run:
            run_all(out)
        found = json.loads(json.dumps(fingerprint(out), default=str))
    if args.mode == "record":
        kept = {"detail": found} if args.detail else {
            "digests": {rel: digest_of(fp) for rel, fp in found.items()}}
        args.fingerprint.write_text(json.dumps(kept, indent=1, sort_keys=True) + "\n")
        print(f"recorded {len(found)} files -> {args.fingerprint}")
        return 0
    recorded = json.loads(args.fingerprint.read_text())
    if "digests" in recorded:
        recorded, found = recorded["digests"], {rel: digest_of(fp) for rel, fp in found.items()}
    else:
        recorded = recorded["detail"]
    diffs = differences(recorded, found)
    for line in diffs:
        print(line)
    print(f"{len(found)} files compared: {'identical' if not diffs else f'{len(diffs)} differences'}")
    return 1 if diffs else 0


if __name__ == "__main__":
    raise SystemExit(main())
