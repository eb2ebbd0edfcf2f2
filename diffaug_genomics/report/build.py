"""``diffaug report``: read a run, draw its figures, write ``report.html`` and ``report/*.png``.

Everything is computed in memory first; the PNG folder is written into a temporary folder
beside the target and renamed, then the HTML is written atomically, so a failure leaves no
half-written output (and an existing report is only replaced with ``force``).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from diffaug_genomics.errors import InputError
from diffaug_genomics.input_kinds import require_run
from diffaug_genomics.output_formats import HTML, output_format
from diffaug_genomics.report import verdicts
from diffaug_genomics.report.html import Page, esc, img, table
from diffaug_genomics.report.state import RunState, read_run

INSTALL_HINT = ("diffaug report needs matplotlib, which is not installed: "
                "pip install 'diffaug-genomics[report]' (or pip install matplotlib)")
PAIRS_SHOWN = 4
WRITE_WAIT_S = 60.0
"""How long a report waits for another one writing the same page (seconds)."""


@dataclass
class ReportSummary:
    html: Path
    figures_dir: Path
    figures: list[str]
    seconds: float
    status: str

    def line(self) -> str:
        return (f"wrote {self.html} and {len(self.figures)} figures in {self.figures_dir}/ in "
                f"{self.seconds:.1f} s (run {self.status.split(':')[0]})")


def require_matplotlib() -> None:
    """:class:`InputError` (exit 2) with the install line when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InputError(INSTALL_HINT) from None


def figures_dir_for(html_path: Path) -> Path:
    """``runs/exp1/report.html`` -> ``runs/exp1/report/`` (the PNG copies of the figures)."""
    return html_path.parent / html_path.stem


def check_outputs(html_path: Path, force: bool, inputs: tuple[Path | str | None, ...] = ()
                  ) -> Path:
    """Refuse existing outputs without ``force`` and outputs that are inputs (before any work);
    returns the figures folder.

    ``--force`` replaces a figures folder only when it holds nothing but PNG files (an earlier
    report's): ``-o runs/exp1/checkpoints.html`` must never replace the run's checkpoints."""
    from diffaug_genomics.io.atomic import check_output

    if html_path.suffix.lower() not in (".html", ".htm"):
        raise InputError("the report is an HTML file: give -o NAME.html", path=html_path)
    check_output(html_path, force, inputs=inputs)
    folder = figures_dir_for(html_path)
    if folder.exists() and not folder.is_dir():
        raise InputError("exists and is not a folder (the report's PNG figures go there)",
                         path=folder)
    if folder.exists():
        _check_figures_folder(folder, force)
    return folder


def _check_figures_folder(folder: Path, force: bool) -> None:
    """An existing figures folder may be replaced only with ``force`` and only when it holds
    nothing but PNG files."""
    if not force:
        raise InputError("output exists (use --force to overwrite)", path=folder)
    other = [p.name for p in folder.iterdir() if not (p.is_file() and p.suffix == ".png")]
    if other:
        raise InputError(f"the figures folder holds other files ({other[0]}...), not an "
                         "earlier report's PNGs: refusing to replace it, choose another -o",
                         path=folder)


def build_report(run_dir: str | Path, output: str | Path | None = None, *,
                 embeddings: str | Path | None = None, labels: str | Path | None = None,
                 input_path: str | Path | None = None, max_points: int = 5000,
                 force: bool = False, tsne: bool = False, seed: int = 0,
                 label_key: str | None = None) -> ReportSummary:
    """Write the report of ``run_dir`` to ``output`` (default ``run_dir/report.html``) and its
    figures to the folder of the same name; see the module docstring."""
    t0 = time.perf_counter()
    require_matplotlib()
    if max_points < 10:
        raise InputError(f"--max-points must be at least 10 (got {max_points})")
    root = Path(run_dir)
    require_run(root, "report")
    if output is not None:
        output_format(output, (HTML,), "report", {"html": "one HTML page"},
                      (root, embeddings, labels, input_path))
    state = read_run(root)  # a non-run, an empty or truncated metrics.csv: exit 2 here
    html_path = Path(output) if output is not None else root / "report.html"
    folder = check_outputs(html_path, force, inputs=(root, embeddings, labels, input_path))
    if labels is not None and not Path(labels).is_file():
        raise InputError("no such file", path=labels)
    from diffaug_genomics.report import data, figures

    points = data.collect_points(state, input_path=input_path, embeddings=embeddings,
                                 labels=labels, max_points=max_points, seed=seed,
                                 label_key=label_key)
    page = Page(f"diffaug run report: {state.root}")
    figs: list[figures.Figure] = []
    page.add("run", "1. The run", _run_section(state))

    fig = figures.learning_curves(state.metrics, state.augment)
    figs.append(fig)
    page.add("curves", "2. Learning curves", "<p>From <code>metrics.csv</code> "
             f"({len(state.metrics)} rows). Dashed lines mark the start of each round's encoder "
             f"training.</p>\n{img(fig)}")

    lines = [verdicts.eff_rank_verdict(state.metrics, state.embed_dim),
             verdicts.cond_gain_verdict(state.metrics, state.has_generator),
             verdicts.positives_verdict(state.metrics, state.has_generator)]
    body = '<ul class="verdicts">' + "".join(f"<li>{esc(v)}</li>" for v in lines) + "</ul>"
    if state.metrics.diagnostics:
        fig = figures.diagnostics(state.metrics, state.embed_dim, state.has_generator)
        figs.append(fig)
        body += img(fig)
    else:
        body += ("<p class=\"note\">The diagnostics were not recorded: this run's "
                 "metrics.csv has only the columns of diffaug-genomics 0.1.0 (no eff_rank, "
                 "cond_gain or pos_identity_* columns); runs of later versions record them.</p>")
    page.add("diagnostics", "3. Diagnostics", body)

    body, fig = _embedding_section(state, points, tsne, seed)
    if fig is not None:
        figs.append(fig)
    page.add("embedding", "4. The embedding", body)

    body, fig = _positives_section(state, points)
    if fig is not None:
        figs.append(fig)
    page.add("positives", "5. Generated positives", body)

    page.add("scores", "6. Scores with labels", _scores_section(state, points, seed))
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    unfinished = "" if state.finished else " unfinished"
    intro = (f'<p class="status{unfinished}"><b>{esc(state.status)}</b></p>\n'
             f'<p class="note">Written by diffaug report on {created}; '
             f"{len(figs)} figures, also as PNG files in <code>{esc(folder.name)}/</code>.</p>")
    text = page.render(intro)
    _write(html_path, folder, text, figs, force)
    return ReportSummary(html_path, folder, [f.name for f in figs], time.perf_counter() - t0,
                         state.status)


# ----------------------------------------------------------------------------------- sections


def _run_section(state: RunState) -> str:
    cfg = state.config
    size = "unknown (data not found)"
    if state.data_rows is not None:
        shape = " x ".join(str(s) for s in (state.sample_shape or ()))
        size = f"{state.data_rows} rows of shape {shape}"
    versions = cfg.get("versions") or {}
    facts = [
        ("status", state.status),
        ("modality", state.modality), ("augmentation", state.augment),
        ("input", cfg.get("input", "?")), ("data size", size),
        ("preset", cfg.get("preset", "?")), ("seed", cfg.get("seed", "?")),
        ("world size", state.world_size),
        ("global batch size", cfg.get("global_batch_size", "?")),
        ("embedding size (encoder.embed_dim)", state.embed_dim),
        ("config hash", state.config_hash),
        ("versions", ", ".join(f"{k} {v}" for k, v in versions.items())),
    ]
    out = table(None, facts)
    found = [verdicts.symmetry_verdict(cfg.get("discovered_symmetry"))]
    if state.finished:
        found.append(verdicts.export_verdict(cfg.get("exported")))
    out += ('<ul class="verdicts">' + "".join(f"<li>{esc(v)}</li>" for v in found) + "</ul>")
    exported = (cfg.get("exported") or {}).get("candidates")
    if exported:
        names = [k for k in exported[0] if k != "state"]
        out += "<h3>Encoder states scored for export (diagnostic rows, no labels)</h3>" + table(
            ["state", *names], [[c["state"], *(f"{c.get(k, math.nan):.4f}" for k in names)]
                                for c in exported], tuple(range(1, len(names) + 1)))
    rows = []
    for i, s in enumerate(state.stages, start=1):
        secs = "" if s.seconds is None else f"{s.seconds:.1f}"
        rows.append([i, s.kind, s.round, f"{s.done_units} / {s.units}", secs])
    total = sum(s.seconds or 0.0 for s in state.stages)
    rows.append(["", "total", "", "", f"{total:.1f}"])
    out += "<h3>Time per stage</h3>" + table(
        ["stage", "kind", "round", "units done", "seconds (from metrics.csv)"], rows, (0, 2, 4))
    ck = [[name, f"{size / 1e6:.2f} MB",
           datetime.fromtimestamp(mtime, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")]
          for name, size, mtime in state.checkpoints]
    out += "<h3>Checkpoints</h3>" + (table(["file", "size", "written"], ck) if ck else
                                     "<p>none yet</p>")
    if state.progress is not None:
        p = state.progress
        out += (f"<p class=\"note\">latest.pt: stage {p.get('stage', 0) + 1}, unit "
                f"{p.get('unit')}, step {p.get('step_in_unit')} within the unit; "
                f"{p.get('enc_step')} encoder and {p.get('gen_step')} generator steps.</p>")
    out += ("<details><summary>Resolved configuration (config.yaml)</summary>"
            f"<pre>{esc(state.config_text)}</pre></details>")
    return out


def _sources_note(points: Any) -> str:
    items = [f"{k}: {v}" for k, v in points.sources.items()]
    if points.label_source:
        items.append(f"labels: {points.label_source}")
    return '<p class="note">' + esc("; ".join(items)) + "</p>"


def _embedding_section(state: RunState, points: Any, tsne: bool, seed: int
                       ) -> tuple[str, Any]:
    from diffaug_genomics.report import figures

    note = _sources_note(points)
    if points.embeddings is None or len(points.embeddings) < 3:
        return f"<p>No embedding map: no embeddings.</p>{note}", None
    method = "tsne" if tsne else "pca"
    coords = figures.project(points.embeddings, method, seed)
    clusters = None
    if points.labels is None:
        from sklearn.cluster import KMeans

        k = min(6, len(points.embeddings) - 1)
        clusters = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(
            points.embeddings)
    gc = None
    if state.modality == "dna" and points.rows is not None:
        from diffaug_genomics.alphabet import gc_content

        gc = gc_content(points.rows)
    fig = figures.embedding_map(coords, method, points.labels, clusters, gc)
    n = len(points.embeddings)
    body = (f"<p>{n} of {points.total} rows (a fixed random sample when there are more than "
            f"--max-points), embedding size {points.embeddings.shape[1]}; "
            f"{'t-SNE' if tsne else 'PCA'} to 2-D"
            + (f", coloured by label ({len(set(points.labels))} classes)"
               if points.labels is not None else ", coloured by k-means cluster (no labels)")
            + (" and by GC content" if gc is not None else "") +
            f".</p>{note}{img(fig)}")
    return body, fig


def _positives_section(state: RunState, points: Any) -> tuple[str, Any]:
    from diffaug_genomics.report import data, positives

    if points.rows is None:
        return "<p>No positives shown: the run's data were not found (give --input).</p>", None
    bank, why = data.load_bank(state, points.index)
    if bank is None:
        return f"<p>{esc(why)}.</p>", None
    intro = (f"<p>The bank of generated positives of the last refresh (round {bank.round}), "
             f"the positives the encoder trained on, for {len(points.rows)} of its "
             f"{bank.total} sources ({bank.positives.shape[1]} per source).</p>")
    if state.modality == "dna":
        p = positives.dna_positives(points.rows, bank.positives)
        fig = positives.dna_positives_figure(p, bank.round)
        k = bank.positives.shape[1]
        pairs = []
        for i in range(min(PAIRS_SHOWN, len(points.rows))):
            block = positives.pair_markup(p.src_bases[i], p.pos_bases[i, 0], p.called[i])
            ident = p.identity[i * k]
            pairs.append(f"<p><b>{esc(points.ids[i])}</b>: identity {ident:.2f} (differences "
                         f"in red; '.' padding, N an uncalled base)</p>"
                         f"<pre class=\"pair\">{block}</pre>")
        summary = (f"<p>Mean identity to the source {p.identity.mean():.3f}; mean GC "
                   f"{p.gc_pos.mean():.3f} (sources {p.gc_src.mean():.3f}).</p>")
        return intro + summary + img(fig) + "<h3>Source / positive pairs</h3>" + \
            "".join(pairs), fig
    if state.modality == "image":
        from diffaug_genomics.modalities.registry import get_modality

        src = get_modality(state.modality).to_model(points.rows[:8]).numpy()
        fig = positives.image_grid(src, bank.positives[:8], bank.round)
        return intro + img(fig), fig
    real = points.rows.reshape(len(points.rows), -1)
    names = _feature_names(state)
    fig = positives.table_features(real, bank.positives.reshape(len(real), -1, real.shape[1]),
                                 bank.round, names)
    return intro + img(fig), fig


def _feature_names(state: RunState) -> list[str] | None:
    try:
        from diffaug_genomics.modalities.arrays import load_preprocess

        names = load_preprocess(state.root)["state"].get("feature_names")
        return list(names) if names else None
    except (InputError, KeyError, TypeError):
        return None


def _fmt(entry: dict[str, Any] | None, metric: str) -> str:
    if entry is None or metric not in entry["metrics"]:
        return "-"
    s = entry["metrics"][metric]
    return f"{s['mean']:.3f}" + ("" if s["sd"] is None else f" ± {s['sd']:.3f}")


def _scores_section(state: RunState, points: Any, seed: int) -> str:
    from diffaug_genomics.report import data

    report, reference, note = data.scores(state, points, seed=seed)
    if report is None:
        return f"<p>{esc(note)}.</p>"
    d = state.embed_dim
    ref_name = "PCA reference" if reference is None else \
        f"PCA-{reference['dim']} of {reference['features']}"
    rows = []
    for name in ("linear", "knn"):
        emb = report["protocols"].get(name)
        ref = None if reference is None else reference["protocols"].get(name)
        rows.append([name, _fmt(emb, "accuracy"), _fmt(emb, "macro_f1"),
                     _fmt(ref, "accuracy"), _fmt(ref, "macro_f1")])
    out = (f"<p>diffaug evaluate's probes ({report['folds']}-fold cross-validation, "
           f"N = {report['n']}, {len(report['classes'])} classes, chance "
           f"{report['chance']:.3f}) on the embedding (D = {d}) and on the same-size PCA "
           "reference (PCA fitted on the training folds only).</p>")
    if reference is not None:
        out += f"<p class=\"note\">{esc(data.reference_note(state, reference, report))}</p>"
    out += table(["protocol", "embedding accuracy", "embedding macro-F1",
                  f"{ref_name} accuracy", f"{ref_name} macro-F1"], rows)
    if note:
        out += f'<p class="note">{esc(note)}</p>'
    for w in report.get("warnings", []):
        out += f'<p class="note">warning: {esc(w)}</p>'
    return out


# ------------------------------------------------------------------------------------ writing


def _write(html_path: Path, folder: Path, text: str, figs: list[Any], force: bool) -> None:
    """The figures folder (written beside it, then renamed) and the HTML, atomically; SIGTERM
    and SIGHUP, like any failure, leave the previous outputs and no temporary folder. One
    report writes at a time (the page's lock; another one waits for it): with ``force`` the
    last one wins whole, without it the second is refused (checked again under the lock)."""
    from diffaug_genomics.io.signals import signals_raise
    from diffaug_genomics.run_lock import Lock

    with signals_raise(), Lock(html_path, "diffaug report", wait_s=WRITE_WAIT_S):
        check_outputs(html_path, force)  # another report may have written them meanwhile
        _write_outputs(html_path, folder, text, figs, force)


def _write_outputs(html_path: Path, folder: Path, text: str, figs: list[Any],
                   force: bool) -> None:
    from diffaug_genomics.io.atomic import atomic_output, default_mode

    parent = html_path.parent if str(html_path.parent) else Path(".")
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=parent))
    old: Path | None = None
    try:
        os.chmod(tmp, 0o777 & ~(0o666 ^ default_mode()) | 0o755)
        for fig in figs:
            (tmp / fig.name).write_bytes(fig.png)
        if folder.exists():
            _check_figures_folder(folder, force)  # again: it may have changed meanwhile
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=parent))
            os.replace(folder, old / folder.name)
        os.replace(tmp, folder)
        with atomic_output(html_path, force) as out:
            out.write_text(text, encoding="utf-8")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and (old / folder.name).exists():
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(old / folder.name, folder)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
