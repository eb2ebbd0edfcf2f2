"""`diffaug report`: figures from a tiny run and from hand-written metrics.csv files, a valid
self-contained HTML page whose every image decodes, bad input refused with one line, and the
page rendered by headless Chromium (Debian's `chromium`, installed with apt-get when missing,
skipped with the reason only when that is impossible)."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

pytest.importorskip("matplotlib")
from diffaug_genomics_cli.main import main  # noqa: E402
from PIL import Image  # noqa: E402 - after the skip (matplotlib brings Pillow)

from diffaug_genomics.report.data import same_size_pca_reference  # noqa: E402
from diffaug_genomics.report.state import BASE_FIELDS, DIAGNOSTIC_FIELDS  # noqa: E402

DIFFAUG = [sys.executable, "-m", "diffaug_genomics_cli.main"]
ENV = {**os.environ, "DIFFAUG_NO_BAR": "1"}
NEW_HEADER = BASE_FIELDS + DIAGNOSTIC_FIELDS


def cli(*args: object) -> tuple[int, str]:
    """Run ``diffaug ARGS`` in this process: (exit code, stderr)."""
    err = io.StringIO()
    old = sys.stderr
    sys.stderr = err
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.stderr = old
    return code, err.getvalue()


@pytest.fixture(scope="module")
def tiny_run(example_fasta, tmp_path_factory) -> Path:
    """`diffaug fit --preset tiny` on the 500 bundled DHS sequences (shared by the module)."""
    run_dir = tmp_path_factory.mktemp("report") / "run"
    proc = subprocess.run([*DIFFAUG, "fit", str(example_fasta), "-o", str(run_dir), "--preset",
                           "tiny", "--seed", "0"], capture_output=True, env=ENV, timeout=600)
    assert proc.returncode == 0, proc.stderr.decode()
    err = proc.stderr.decode()
    assert f"diffaug report {run_dir}" in err.strip().splitlines()[-1]  # fit says how to look
    return run_dir


@pytest.fixture(scope="module")
def tiny_embeddings(tiny_run, example_fasta, example_labels, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("emb")
    h5 = folder / "example.h5"
    assert cli("encode", example_fasta, "-o", h5, "--length", "200", "--labels",
               example_labels)[0] == 0
    out = folder / "emb.h5"
    assert cli("embed", tiny_run, h5, "-o", out)[0] == 0
    return out


# -------------------------------------------------------------------------- hand-written runs


def metrics_rows(*, diagnostics: bool = True, collapsed: bool = False, baseline: bool = False,
                 stop_after: str | None = None, embed_dim: int = 32) -> list[list[str]]:
    """A plausible metrics.csv of a 1-round run: init, warm-up, generator, bank, encoder."""
    rows: list[list[str]] = []
    t = [0.0]

    def row(phase, rnd, epoch, step, loss="", lr="", rate="", **diag):
        t[0] += 0.5
        base = [f"{t[0]:.2f}", phase, str(rnd), str(epoch), str(step), loss, lr, rate]
        extra = [diag.get(k, "") for k in DIAGNOSTIC_FIELDS]
        rows.append(base + (extra if diagnostics else []))

    def rank(i):
        return f"{2.0 + 0.1 * i:.2f}" if collapsed else f"{10 + 3 * i:.2f}"

    if diagnostics:
        row("init", 0, -1, 0, eff_rank=rank(0), eff_rank_pooled=rank(0))
    enc_phase = "encoder" if baseline else "warmup"
    step = 0
    for epoch in range(2):
        for _ in range(2):
            step += 5
            row(enc_phase, 0, epoch, step, f"{4.2 - 0.1 * step / 5:.4f}", "0.001", "900.0")
        if diagnostics:
            row(enc_phase, 0, epoch, step, eff_rank=rank(epoch + 1), eff_rank_pooled=rank(epoch))
    if stop_after == "warmup":
        return rows
    if not baseline:
        for unit in range(2):
            for s in range(3):
                g = unit * 30 + 10 * (s + 1)
                row("generator", 1, unit, g, f"{0.9 - 0.01 * g:.4f}", "0.001", "1000.0")
            if diagnostics:
                row("generator", 1, unit, (unit + 1) * 30,
                    cond_gain="0.002" if collapsed else f"{0.05 + 0.02 * unit:.3f}")
        row("bank", 1, 0, 60, "nan", "0", "600.0", pos_identity_source="0.81",
            pos_identity_nearest="0.42", pos_kmer3_l1="0.18")
        for epoch in range(2):
            for _ in range(2):
                step += 5
                row("encoder", 1, epoch, step, f"{4.5 - 0.1 * step / 5:.4f}", "0.0005", "800.0")
            if diagnostics:
                row("encoder", 1, epoch, step, eff_rank=rank(epoch + 3))
    return rows


def write_metrics(path: Path, rows: list[list[str]], diagnostics: bool = True) -> None:
    header = NEW_HEADER if diagnostics else BASE_FIELDS
    path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")


def fake_run(tiny_run: Path, dest: Path, *, rows: list[list[str]], diagnostics: bool = True,
             augment: str | None = None, finished: bool = True) -> Path:
    """A copy of the tiny run with a hand-written metrics.csv (and config / files adjusted)."""
    shutil.copytree(tiny_run, dest, ignore=shutil.ignore_patterns("report*"))
    write_metrics(dest / "metrics.csv", rows, diagnostics)
    if augment is not None:
        cfg = yaml.safe_load((dest / "config.yaml").read_text())
        cfg["augment"] = augment
        (dest / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        (dest / "generator.pt").unlink()
        shutil.rmtree(dest / "cache")
    if not finished:
        (dest / "encoder.pt").unlink()
        (dest / "generator.pt").unlink(missing_ok=True)
    return dest


# ----------------------------------------------------------------------------- HTML checking


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.images: list[dict[str, str]] = []
        self.scripts = 0
        self.links: list[str] = []
        self.text: list[str] = []

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a)
        if tag == "script":
            self.scripts += 1
        for key in ("src", "href"):
            if a.get(key) and not a[key].startswith(("data:", "#")):
                self.links.append(a[key])
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1:]}>"
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def check_page(html_path: Path) -> tuple[_Collect, str]:
    """The page parses with balanced tags, has no script and no external resource, and every
    image is an inline PNG that decodes to its declared size and equals the PNG file beside it."""
    text = html_path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    page = _Collect()
    page.feed(text)
    page.close()
    assert page.stack == [], page.stack
    assert page.scripts == 0 and page.links == []
    assert page.images
    folder = html_path.parent / html_path.stem
    for attrs in page.images:
        head, data = attrs["src"].split(",", 1)
        assert head == "data:image/png;base64"
        png = base64.b64decode(data, validate=True)
        with Image.open(io.BytesIO(png)) as im:
            im.load()
            assert im.size == (int(attrs["width"]), int(attrs["height"]))
            assert np.asarray(im.convert("L")).std() > 5  # not a blank image
        assert (folder / attrs["data-file"]).read_bytes() == png
    assert sorted(p.name for p in folder.iterdir()) == sorted(a["data-file"] for a in page.images)
    return page, " ".join(" ".join(page.text).split())


# ------------------------------------------------------------------------------------- tests


def test_report_of_a_tiny_run(tiny_run, example_labels, tmp_path):
    out = tmp_path / "rep.html"
    code, err = cli("report", tiny_run, "-o", out, "--labels", example_labels)
    assert code == 0, err
    page, text = check_page(out)
    names = sorted(a["data-file"] for a in page.images)
    assert names == ["diagnostics.png", "embedding_map.png", "learning_curves.png",
                     "positives.png"]
    assert "finished: all 4 stages" in text
    for heading in ("1. The run", "2. Learning curves", "3. Diagnostics", "4. The embedding",
                    "5. Generated positives", "6. Scores with labels"):
        assert heading in text
    assert "Resolved configuration" in text and "<details>" in out.read_text()
    # the diagnostics fit wrote into metrics.csv, in words
    assert re.search(r"the embedding kept \d+ of 32 effective dimensions \(untrained encoder: "
                     r"\d+\)", text)
    assert re.search(r"the generator (uses|ignores) its condition", text)
    assert re.search(r"positives keep \d+ % of their source's bases and \d+ % of the nearest",
                     text)
    assert "coloured by label (4 classes) and by GC content" in text
    assert "PCA-32 of 6-mer frequencies accuracy" in text
    assert re.search(r"linear 0\.\d{3} ± 0\.\d{3} 0\.\d{3} ± 0\.\d{3} 0\.\d{3}", text)
    assert "Source / positive pairs" in text and "<b>" in out.read_text()
    # --force replaces it; without --force it is refused
    assert cli("report", tiny_run, "-o", out)[0] == 2
    assert cli("report", tiny_run, "-o", out, "--force")[0] == 0
    check_page(out)  # without labels: k-means colours
    assert "coloured by k-means cluster (no labels)" in check_page(out)[1]


def test_report_with_embeddings_file_and_tsne(tiny_run, tiny_embeddings, tmp_path):
    out = tmp_path / "r.html"
    code, err = cli("report", tiny_run, "-o", out, "--embeddings", tiny_embeddings, "--tsne",
                    "--max-points", "200")
    assert code == 0, err
    _, text = check_page(out)
    assert "200 of 500 rows" in text and "t-SNE to 2-D" in text
    assert "labels: /labels of" in text  # the embeddings' own /labels score it
    assert "embedding accuracy" in text


def test_report_of_hand_written_diagnostics(tiny_run, tmp_path):
    run = fake_run(tiny_run, tmp_path / "run", rows=metrics_rows())
    code, err = cli("report", run, "-o", tmp_path / "r.html")
    assert code == 0, err
    page, text = check_page(tmp_path / "r.html")
    assert "diagnostics.png" in [a["data-file"] for a in page.images]
    assert "the embedding kept 22 of 32 effective dimensions (untrained encoder: 10)" in text
    assert "the generator uses its condition" in text and "7 %" in text
    assert "positives keep 81 % of their source's bases and 42 % of the nearest" in text


def test_report_of_a_collapsed_embedding(tiny_run, tmp_path):
    run = fake_run(tiny_run, tmp_path / "run", rows=metrics_rows(collapsed=True))
    code, err = cli("report", run, "-o", tmp_path / "r.html")
    assert code == 0, err
    _, text = check_page(tmp_path / "r.html")
    assert "the embedding kept 2 of 32 effective dimensions" in text
    assert "it has collapsed" in text
    assert "the generator ignores its condition" in text


def test_report_of_a_stopped_run(tiny_run, tmp_path):
    run = fake_run(tiny_run, tmp_path / "run", rows=metrics_rows(stop_after="warmup"),
                   finished=False)
    shutil.copyfile(run / "checkpoints" / "warmup.pt", run / "checkpoints" / "latest.pt")
    (run / "cache" / "bank.pt").unlink()  # stopped before the first bank refresh
    with open(run / "log.txt", "a") as fh:
        fh.write("2026-01-01 00:00:00,000 WARNING received SIGTERM: checkpointing and stopping\n")
    code, err = cli("report", run)  # default output: RUN/report.html
    assert code == 0, err
    page, text = check_page(run / "report.html")
    assert "stopped by SIGTERM" in text
    assert "reached stage 2 of 4 (generator, round 1, unit 1 of 2), 2 of 7 units done" in text
    assert "encoder of the latest checkpoint" in text  # the map uses the checkpoint's encoder
    assert "no bank yet" in text
    assert "unfinished" in (run / "report.html").read_text()


@pytest.mark.parametrize("writer", ["live", "killed", "none"])
def test_report_of_a_run_in_progress_or_not(writer, tiny_run, tmp_path):
    """In progress exactly while a fit holds the run directory's lock (here: this process);
    a lock whose process has died marks a run that stopped without finishing."""
    from diffaug_genomics.run_lock import Lock

    run = fake_run(tiny_run, tmp_path / "run", rows=metrics_rows(stop_after="warmup"),
                   finished=False)
    shutil.copyfile(run / "checkpoints" / "warmup.pt", run / "checkpoints" / "latest.pt")
    lock = Lock(run, "diffaug fit")
    if writer != "none":
        lock.acquire()
    if writer == "killed":  # what kill -9 leaves: the record of a process that has ended
        record = json.loads(lock.path.read_text())
        lock.release()
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        lock.path.write_text(json.dumps({**record, "pid": dead.pid, "pid_start": ""}))
    with open(run / "metrics.csv", "a") as fh:
        fh.write("9.99,warmup,0,0")  # a row being appended right now
    try:
        code, err = cli("report", run)
    finally:
        lock.release()
    if writer != "live":  # the half row is not a row of a run in progress
        assert code == 2 and "truncated: the last line is incomplete" in err, err
        with open(run / "metrics.csv", "a") as fh:
            fh.write(",4,1.0" + "," * (len(NEW_HEADER) - 6) + "\n")
        code, err = cli("report", run)
    assert code == 0, err
    _, text = check_page(run / "report.html")
    expected = {"live": f"in progress (being written by diffaug fit, pid {os.getpid()} on ",
                "killed": "stopped: diffaug fit, pid ",
                "none": "stopped (no fit is writing it; last written"}[writer]
    assert expected in text, text[:2000]
    if writer == "killed":
        assert "ended without finishing (its process" in text


def test_report_of_a_baseline_run_without_diagnostics_columns(tiny_run, tmp_path):
    run = fake_run(tiny_run, tmp_path / "run", diagnostics=False, augment="knn-mixup",
                   rows=metrics_rows(diagnostics=False, baseline=True))
    code, err = cli("report", run, "-o", tmp_path / "r.html")
    assert code == 0, err
    page, text = check_page(tmp_path / "r.html")
    assert [a["data-file"] for a in page.images] == ["learning_curves.png", "embedding_map.png"]
    assert "effective rank: not recorded" in text and "no generator in this run" in text
    assert "there is no generator and no generated positives" in text
    assert "The diagnostics were not recorded" in text


def test_same_size_pca_reference_fits_on_training_folds():
    rng = np.random.default_rng(0)
    y = np.repeat(["a", "b", "c"], 40)
    x = rng.normal(size=(120, 50))
    x[:, 7] += np.repeat([0.0, 6.0, 12.0], 40)
    ref = same_size_pca_reference(x, y, 4, folds=5)
    assert ref["dim"] == 4
    assert ref["protocols"]["linear"]["metrics"]["accuracy"]["mean"] > 0.9
    assert len(ref["protocols"]["knn"]["metrics"]["accuracy"]["values"]) == 5
    assert same_size_pca_reference(x[:, :3], y, 32)["dim"] == 3  # capped at the features


def _no_output(folder: Path) -> None:
    assert not (folder / "r.html").exists() and not (folder / "r").exists()
    assert not [p for p in folder.iterdir() if p.name.startswith(".r")]


def _bad_case(case: str, tiny_run: Path, tiny_embeddings: Path, tmp: Path) -> list[object]:
    out = ["-o", tmp / "r.html"]
    if case == "not a run":
        (tmp / "empty").mkdir()
        return [tmp / "empty", *out]
    if case in ("empty metrics", "truncated metrics", "header only"):
        run = fake_run(tiny_run, tmp / "run", rows=metrics_rows())
        text = (run / "metrics.csv").read_text()
        (run / "metrics.csv").write_text({"empty metrics": "", "header only":
                                          text.splitlines()[0] + "\n",
                                          "truncated metrics": text[:-25]}[case])
        return [run, *out]
    if case == "embeddings of another run":
        other = tmp / "other.h5"
        shutil.copyfile(tiny_embeddings, other)
        with h5py.File(other, "a") as f:
            f.attrs["config_hash"] = "0123456789abcdef"
        return [tiny_run, *out, "--embeddings", other]
    if case == "labels match no id":
        labels = tmp / "labels.tsv"
        labels.write_text("id\tlabel\nnope1\ta\nnope2\tb\n")
        return [tiny_run, *out, "--labels", labels]
    if case == "existing output":
        (tmp / "r.html").write_text("keep")
        return [tiny_run, *out]
    raise AssertionError(case)


@pytest.mark.parametrize("case, needle", [
    ("not a run", "report needs a run directory"),
    ("empty metrics", "empty file"),
    ("header only", "no rows"),
    ("truncated metrics", "truncated"),
    ("embeddings of another run", "embeddings from another run"),
    ("labels match no id", "match no id"),
    ("existing output", "--force"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(case, needle, tiny_run,
                                                             tiny_embeddings, tmp_path):
    args = _bad_case(case, tiny_run, tiny_embeddings, tmp_path)
    code, err = cli("report", *args)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("diffaug: error: ") and needle in lines[0], err
    if case == "existing output":
        assert (tmp_path / "r.html").read_text() == "keep" and not (tmp_path / "r").exists()
    else:
        _no_output(tmp_path)


def test_without_matplotlib_exits_2_with_the_install_line(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    code, err = cli("report", tiny_run, "-o", tmp_path / "r.html")
    assert code == 2
    assert err.strip() == ("diffaug: error: diffaug report needs matplotlib, which is not "
                           "installed: pip install 'diffaug-genomics[report]' (or pip install "
                           "matplotlib)")
    _no_output(tmp_path)


# ------------------------------------------------------------------------- headless Chromium

CHROMIUM_COMMANDS = ("chromium", "chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                  "--disable-extensions", "--mute-audio"]
PROBE = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var out = {n: imgs.length,
             broken: imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).length,
             shown: imgs.map(function (i) { var r = i.getBoundingClientRect();
                                            return [i.naturalWidth, i.naturalHeight, r.width, r.height, r.top + window.scrollY]; }),
             height: document.documentElement.scrollHeight,
             width: document.documentElement.scrollWidth};
  var pre = document.createElement("pre"); pre.id = "probe";
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
});
</script>"""


def chromium() -> str:
    """Path of Debian's chromium, installed with apt-get when missing; skip (with the reason)
    only when it cannot be installed (the pattern of tests/slurm/harness.py)."""
    found = next((shutil.which(c) for c in CHROMIUM_COMMANDS if shutil.which(c)), None)
    if found:
        return found
    if os.geteuid() != 0:
        pytest.skip("chromium is not installed and installing it needs root")
    if shutil.which("apt-get") is None:
        pytest.skip("chromium is not installed and there is no apt-get to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:  # stale package lists: refresh once and retry
        subprocess.run(["apt-get", "update"], env=env, capture_output=True)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    found = next((shutil.which(c) for c in CHROMIUM_COMMANDS if shutil.which(c)), None)
    if proc.returncode != 0 or not found:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        pytest.skip(f"apt-get install chromium failed: {tail[0]}")
    return found


def browse(exe: str, page: Path, *extra: str, timeout: float = 60) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        return subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra,
                               page.resolve().as_uri()], capture_output=True, text=True,
                              timeout=timeout)


@pytest.mark.slow
def test_report_renders_in_headless_chromium(tiny_run, example_labels, tmp_path):
    exe = chromium()
    out = tmp_path / "report.html"
    assert cli("report", tiny_run, "-o", out, "--labels", example_labels)[0] == 0
    # 1. the browser loads every image: a test-only copy of the page carries a probe script
    probe_page = tmp_path / "probe.html"
    probe_page.write_text(out.read_text().replace("</body>", PROBE + "\n</body>"))
    proc = browse(exe, probe_page, "--dump-dom", "--virtual-time-budget=10000",
                  "--window-size=1280,1000")
    found = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, re.S)
    assert found, proc.stderr[-2000:]
    probe = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert probe["n"] == 4 and probe["broken"] == 0
    expected = 0.0
    for natural_w, natural_h, w, h, _top in probe["shown"]:
        assert natural_w > 0 and w > 300 and abs(h - w * natural_h / natural_w) < 2
        expected += h
    assert probe["width"] <= 1280  # nothing wider than the window
    assert expected < probe["height"] < expected + 3500, probe
    # 2. a screenshot of the page itself (no script) shows the figures where the probe saw them
    shot = tmp_path / "report.png"
    height = int(probe["height"])
    proc = browse(exe, out, f"--screenshot={shot}", f"--window-size=1280,{height}")
    assert shot.is_file(), proc.stderr[-2000:]
    with Image.open(shot) as im:
        assert im.size == (1280, height)
        grey = np.asarray(im.convert("L"), dtype=np.float32)
    assert (grey < 200).mean() > 0.02  # text and plots, not a blank page
    for _nw, _nh, _w, h, top in probe["shown"]:
        region = grey[int(top) + 5:int(top + h) - 5]
        assert region.size and region.std() > 20  # each figure drawn, not an empty box
    keep = os.environ.get("DIFFAUG_SCREENSHOT_DIR")
    if keep:
        shutil.copyfile(shot, Path(keep) / "report-chromium.png")


@pytest.mark.parametrize("kind", ["tabular", "image"])
def test_report_of_image_and_table_runs(kind, tmp_path):
    rng = np.random.default_rng(0)
    if kind == "tabular":
        y = rng.integers(0, 3, 240)
        x = rng.normal(size=(240, 10)) + y[:, None] * np.linspace(0, 2, 10)
        data = tmp_path / "cells.csv"
        lines = [",".join([f"g{i}" for i in range(10)] + ["cell_type"])]
        lines += [",".join(f"{v:.3f}" for v in r) + f",t{c}" for r, c in zip(x, y, strict=True)]
        data.write_text("\n".join(lines) + "\n")
        extra = ["--label-column", "cell_type"]
    else:
        data = tmp_path / "images.npy"
        np.save(data, (rng.random((120, 12, 12, 1)) * 255).astype(np.uint8))
        extra = []
    run = tmp_path / "run"
    assert cli("fit", data, "-o", run, "--preset", "tiny", "--set", "schedule.warmup_epochs=1",
               "--set", "schedule.epochs_per_round=1", *extra)[0] == 0
    code, err = cli("report", run)
    assert code == 0, err
    page, text = check_page(run / "report.html")
    assert "positives.png" in [a["data-file"] for a in page.images]
    if kind == "tabular":
        assert "PCA-" in text and "of raw (preprocessed) features accuracy" in text
    else:
        assert "coloured by k-means cluster (no labels)" in text


def test_metrics_reader_tells_diagnostic_rows_from_diverged_steps(tmp_path):
    from diffaug_genomics.report.state import read_metrics

    rows = metrics_rows()
    rows[2][5] = "nan"  # a warm-up step whose loss diverged stays a step
    write_metrics(tmp_path / "metrics.csv", rows)
    m = read_metrics(tmp_path / "metrics.csv")
    assert m.diagnostics and len(m) == len(rows)
    assert len(m.steps("warmup")) == 4 and np.isnan(m.steps("warmup")["loss"]).sum() == 1
    assert list(m.diagnostic_rows("init", "warmup", "encoder")["eff_rank"]) == \
        [10.0, 13.0, 16.0, 19.0, 22.0]
    assert len(m.diagnostic_rows("generator")) == 2
    bank = m.rows(m.phase == "bank")
    assert len(bank) == 1 and np.isnan(bank["loss"][0]) and bank["pos_kmer3_l1"][0] == 0.18
    old = tmp_path / "old.csv"
    write_metrics(old, metrics_rows(diagnostics=False), diagnostics=False)
    m = read_metrics(old)
    assert not m.diagnostics and np.isnan(m["eff_rank"]).all()


def test_report_outputs_never_replace_the_runs_own_files(tiny_run, tmp_path):
    """`-o RUN/checkpoints.html --force` would put the figures in RUN/checkpoints/: refused
    (that folder holds more than an earlier report's PNGs), as is an output that is an input;
    the run is untouched. A folder of PNGs from an earlier report is replaced with --force."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    code, err = cli("report", run, "-o", run / "checkpoints.html", "--force")
    assert code == 2 and "refusing to replace it" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before
    assert not (run / "checkpoints.html").exists()
    labels = tmp_path / "labels.html"  # an input given as the output
    labels.write_text("id\tlabel\n")
    code, err = cli("report", run, "-o", labels, "--labels", labels, "--force")
    assert code == 2 and "the output is the input" in err and labels.read_text() == "id\tlabel\n"
    code, err = cli("report", run, "-o", run / "r.html")
    assert code == 0, err
    code, err = cli("report", run, "-o", run / "r.html", "--force")  # PNGs only: replaced
    assert code == 0, err
    assert {p.suffix for p in (run / "r").iterdir()} == {".png"}


def test_sigterm_while_writing_the_figures_leaves_nothing_behind(tmp_path, monkeypatch):
    """SIGTERM (a cluster's scancel) arriving while the PNG folder is written: no temporary
    folder, no half report, and the previous report kept."""
    import os
    import signal
    import time

    from diffaug_genomics.errors import Terminated
    from diffaug_genomics.report import build

    html, folder = tmp_path / "r.html", tmp_path / "r"
    folder.mkdir()
    (folder / "old.png").write_bytes(b"old")
    html.write_text("old report")

    class Fig:
        name, png = "a.png", b"png"

    class Slow(Fig):
        name = "b.png"

        @property
        def png(self):  # noqa: ANN201 - the signal arrives while this figure is written
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
            return b"never"

    with pytest.raises(Terminated):
        build._write(html, folder, "<html></html>", [Fig(), Slow()], force=True)
    assert html.read_text() == "old report" and [p.name for p in folder.iterdir()] == ["old.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r", "r.html"]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
