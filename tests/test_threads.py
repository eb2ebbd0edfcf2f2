"""Threads: the CPUs a process may use, the busy ones left out, --threads / DIFFAUG_THREADS."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch

from diffaug_genomics import threads
from diffaug_genomics.errors import InputError


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("DIFFAUG_THREADS", "OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "_cgroup_quota", lambda: None)
    return monkeypatch


def test_usable_cpus_follow_affinity_slurm_and_local_ranks(clean_env):
    clean_env.setattr(threads, "allowed_cpu_ids", lambda: list(range(16)))
    assert threads.usable_cpus() == 16  # the mask, not os.cpu_count()
    clean_env.setenv("SLURM_CPUS_PER_TASK", "4")
    assert threads.usable_cpus() == 4
    clean_env.setenv("LOCAL_WORLD_SIZE", "2")
    assert threads.usable_cpus() == 2
    clean_env.setattr(threads, "_cgroup_quota", lambda: 1)
    assert threads.usable_cpus() == 1


def test_the_real_affinity_mask_is_read(clean_env):
    import os

    assert threads.usable_cpus() == len(os.sched_getaffinity(0))


def test_choice_order_threads_then_env_then_omp(clean_env):
    clean_env.setattr(threads, "busy_cpus", lambda *a, **k: 0.0)
    clean_env.setattr(threads, "usable_cpus", lambda: 8)
    assert threads.choose_threads().threads == 8
    clean_env.setenv("OMP_NUM_THREADS", "3")
    assert (threads.choose_threads().threads, threads.choose_threads().source) == (3, "OMP_NUM_THREADS")
    clean_env.setenv("DIFFAUG_THREADS", "2")
    assert threads.choose_threads().source == "DIFFAUG_THREADS"
    assert threads.choose_threads(5).threads == 5
    clean_env.setenv("DIFFAUG_THREADS", "many")
    with pytest.raises(InputError, match="DIFFAUG_THREADS='many'"):
        threads.choose_threads()
    with pytest.raises(InputError, match="--threads must be a positive integer"):
        threads.choose_threads(0)


def test_busy_cpus_are_left_out_and_said(clean_env):
    clean_env.setattr(threads, "usable_cpus", lambda: 2)
    clean_env.setattr(threads, "busy_cpus", lambda *a, **k: 1.0)
    choice = threads.choose_threads()
    assert choice.threads == 1 and "computing with 1 thread" in choice.warning()
    asked = threads.choose_threads(2)
    assert asked.threads == 2 and "only 1 of the 2 CPUs" in asked.warning()
    clean_env.setattr(threads, "busy_cpus", lambda *a, **k: 0.1)
    assert threads.choose_threads().threads == 2 and threads.choose_threads().warning() is None


def test_busy_cpus_sees_a_real_competing_process():
    ids = threads.allowed_cpu_ids()
    idle = threads.busy_cpus(0.2, ids)
    load = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        busy = threads.busy_cpus(0.3, ids)
    finally:
        load.kill()
        load.wait()
    assert busy is not None and busy >= 0.8 and busy <= len(ids) + 0.01
    assert idle is not None and idle >= 0.0



def test_busy_cpus_leaves_out_this_process_s_own_threads():
    import threading

    ids = threads.allowed_cpu_ids()
    stop = threading.Event()

    def spin() -> None:  # a pool thread of ours still busy (as after importing a BLAS)
        while not stop.is_set():
            pass

    worker = threading.Thread(target=spin, daemon=True)
    worker.start()
    try:
        busy = threads.busy_cpus(0.3, ids)
    finally:
        stop.set()
        worker.join()
    assert busy is not None and busy < 0.5


def test_apply_threads_sets_torch(clean_env):
    before = torch.get_num_threads()
    try:
        choice = threads.apply_threads(1, measure=False)
        assert choice.threads == 1 and torch.get_num_threads() == 1
        assert threads.applied() == choice
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("env, args, needle", [
    ({}, ["--threads", "0"], "--threads"),
    ({"DIFFAUG_THREADS": "x"}, [], "DIFFAUG_THREADS='x'"),
])
def test_cli_refuses_bad_thread_counts(tmp_path, example_fasta, env, args, needle):
    import os

    proc = subprocess.run([sys.executable, "-m", "diffaug_genomics_cli.main", "encode",
                           str(example_fasta), "-o", str(tmp_path / "x.h5"), *args],
                          capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "", **env})
    assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.h5").exists()
