"""What a new user trips over (issue 25), each on real or fixture data: output formats that
follow the name, nothing changed silently, errors that name the real mistake, a failed fit
that leaves nothing, discoverable config keys, one console for bars and log lines.

The messy FASTA is made from the bundled DHS sequences (real DNA): a record longer than the
run's rows, soft-masked bases, an N run, a 12 bp record, an empty record, RNA letters and
CRLF line ends.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from test_cli_modalities import FAST_ARGS, cli

from diffaug_genomics.io.fasta import read_fasta
from diffaug_genomics.io.h5 import open_onehot, read_embeddings

DATA = Path(__file__).resolve().parent / "data"
OLD = DATA / "old_run"
DNA_RUN = OLD / "dna_run"  # length 48, policy center


def dhs(example_fasta: Path, n: int) -> list[tuple[str, str]]:
    return [(rid, seq.decode()) for rid, seq in list(read_fasta(example_fasta))[:n]]


@pytest.fixture
def messy_fasta(tmp_path, example_fasta) -> Path:
    recs = dhs(example_fasta, 6)
    long = recs[0][1] + recs[1][1] + recs[2][1]  # 600 bp: cropped to the middle 48
    masked = recs[3][1][:30].lower() + recs[3][1][30:60]
    n_run = recs[4][1][:20] + "N" * 15 + recs[4][1][20:40]
    rna = recs[5][1][:40].replace("T", "U")
    text = (f">long some description\r\n{long[:300]}\r\n{long[300:]}\r\n"
            f">masked\r\n{masked}\r\n>nrun\r\n{n_run}\r\n>tiny\r\n{recs[0][1][:12]}\r\n"
            f">empty\r\n>rna\r\n{rna}\r\n")
    path = tmp_path / "messy.fa"
    path.write_bytes(text.encode())
    return path


# ---------------------------------------------------------------- nothing changed silently

def test_generate_says_what_reading_changed_and_names_coordinates(capsys, tmp_path,
                                                                  messy_fasta):
    out = tmp_path / "pos.fa"
    code, _, err = cli(capsys, "generate", DNA_RUN, messy_fasta, "-o", out, "--seed", "1")
    assert code == 0, err
    summary = [ln for ln in err.splitlines() if "read into rows of 48 bp" in ln]
    assert len(summary) == 1, err  # one line
    line = summary[0]
    assert "'center' policy" in line and "3 of 5 records longer than 48 bp cropped" in line
    assert "2 shorter records padded" in line and "U read as T in 1 record " in line
    assert "soft-masked" in line and "1 empty record skipped ('empty')" in line
    records = list(read_fasta(out))
    heads = [ln for ln in out.read_text().splitlines() if ln.startswith(">")]
    assert [r for r, _ in records] == [f"{r}|pos0" for r in ("long", "masked", "nrun", "tiny",
                                                             "rna")]
    start = (600 - 48) // 2
    assert f"source=long:{start}-{start + 48} " in heads[0]
    assert "source=tiny:0-12 " in heads[3] and "source=rna:0-40 " in heads[4]
    lengths = [len(s) for _, s in records]
    assert lengths == [48, 48, 48, 12, 40]  # each positive covers its own bases only
    assert all(set(s.decode()) <= set("ACGT") for _, s in records)


def test_encode_records_starts_and_says_rna_and_masking(capsys, tmp_path, messy_fasta):
    out = tmp_path / "enc.h5"
    code, _, err = cli(capsys, "encode", messy_fasta, "-o", out, "--length", "48",
                       "--policy", "center")
    assert code == 0, err
    assert "U read as T in 1 record" in err and "1 empty record skipped" in err
    with open_onehot(out) as f:
        starts = f["starts"][()].tolist()
        ids = [s.decode() for s in f["ids"][()]]
    assert ids == ["long", "masked", "nrun", "tiny", "rna"]
    assert starts == [(600 - 48) // 2, (60 - 48) // 2, (55 - 48) // 2, 0, 0]
    # embeddings of the encoded file carry the same coordinates
    emb = tmp_path / "emb.h5"
    code, _, err = cli(capsys, "embed", DNA_RUN, out, "-o", emb)
    assert code == 0, err
    with h5py.File(emb) as f:
        regions = [s.decode() for s in f["regions"][()]]
    assert regions[0] == f"long:{(600 - 48) // 2}-{(600 - 48) // 2 + 48}"
    assert regions[3] == "tiny:0-12"


# ----------------------------------------------------------- the output's name decides

@pytest.mark.parametrize("name, opener", [("pos.fa.gz", "gzip"), ("pos.fasta.bgz", "bgzip"),
                                          ("pos.fna", None)])
def test_generate_compression_follows_the_name(capsys, tmp_path, name, opener):
    out = tmp_path / name
    code, _, err = cli(capsys, "generate", DNA_RUN, OLD / "dna_input.fa", "-o", out)
    assert code == 0, err
    raw = out.read_bytes()
    if opener is None:
        assert raw.startswith(b">")
        text = raw.decode()
    else:
        assert raw[:2] == b"\x1f\x8b"
        if opener == "bgzip":
            assert raw[12:14] == b"BC"  # a BGZF block
        text = gzip.decompress(raw).decode()
    import io

    from Bio import SeqIO

    assert len(list(SeqIO.parse(io.StringIO(text), "fasta"))) == 32


def test_generate_to_h5_writes_one_hot_positives(capsys, tmp_path):
    out = tmp_path / "pos.h5"
    code, _, err = cli(capsys, "generate", DNA_RUN, OLD / "dna_input.fa", "-o", out, "-k", "2")
    assert code == 0, err
    with open_onehot(out) as f:
        assert f["onehot"].shape == (64, 48, 4)
        ids = [s.decode() for s in f["ids"][:2]]
    assert ids[0].endswith("|pos0") and ids[1].endswith("|pos1")
    # the positives are data: they embed like any encoded file
    code, _, err = cli(capsys, "embed", DNA_RUN, out, "-o", tmp_path / "e.h5")
    assert code == 0, err


@pytest.mark.parametrize("command, args, needle", [
    ("generate", [DNA_RUN, OLD / "dna_input.fa"], ".fa/.fasta/.fna (+ .gz or .bgz)"),
    ("embed", [DNA_RUN, OLD / "dna_input.fa"], ".h5/.hdf5 (embeddings HDF5), .h5ad"),
    ("encode", [OLD / "dna_input.fa"], ".h5/.hdf5 (one-hot HDF5)"),
    ("evaluate", [OLD / "dna_embeddings.h5"], ".json"),
])
def test_an_output_name_of_no_format_is_refused_naming_the_choices(capsys, tmp_path, command,
                                                                    args, needle):
    out = tmp_path / "out.txt"
    code, _, err = cli(capsys, command, *args, "-o", out)
    assert code == 2 and "cannot tell which format to write" in err and needle in err, err
    assert not out.exists()


def test_dna_embeddings_as_anndata(capsys, tmp_path):
    anndata = pytest.importorskip("anndata")
    out = tmp_path / "emb.h5ad"
    code, _, err = cli(capsys, "embed", DNA_RUN, OLD / "dna_input.h5", "-o", out)
    assert code == 0, err
    adata = anndata.read_h5ad(out)
    emb, ids, labels, _ = read_embeddings(OLD / "dna_embeddings_from_h5.h5")
    assert list(adata.obs_names) == ids
    np.testing.assert_allclose(adata.obsm["X_diffaug"], emb, rtol=1e-6)
    assert list(adata.obs["label"]) == labels and adata.obs["region"].iloc[0] == f"{ids[0]}:0-48"


# ----------------------------------------------------- the user's AnnData comes back whole

@pytest.fixture(scope="module")
def pbmc_run(tmp_path_factory):
    """A tiny tabular run on the PBMC fixture (30 cells x 20 genes)."""
    from diffaug_genomics_cli.main import main

    out = tmp_path_factory.mktemp("pbmc") / "run"
    try:
        main(["fit", str(DATA / "pbmc68k_30x20_anndata.h5ad"), "-o", str(out), "--preset",
              "tiny", "--augment", "knn-mixup", *FAST_ARGS])
    except SystemExit as exc:
        assert not exc.code
    return out


def rich_h5ad(tmp_path: Path) -> Path:
    """The PBMC fixture rewritten by anndata with layers, obsm, varm and nested uns added."""
    anndata = pytest.importorskip("anndata")
    import scipy.sparse as sp

    adata = anndata.read_h5ad(DATA / "pbmc68k_30x20_anndata.h5ad")
    rng = np.random.default_rng(0)
    adata.layers["counts"] = sp.csr_matrix(rng.poisson(1.0, adata.shape).astype(np.float32))
    adata.obsm["X_pca"] = rng.normal(size=(adata.n_obs, 5)).astype(np.float32)
    adata.obsm["X_umap"] = rng.normal(size=(adata.n_obs, 2)).astype(np.float32)
    adata.obs["batch"] = ["a", "b"] * (adata.n_obs // 2)
    adata.uns["neighbors"] = {"params": {"n_neighbors": 15}}
    path = tmp_path / "pbmc.h5ad"
    adata.write_h5ad(path)
    return path


@pytest.mark.parametrize("with_anndata", [True, False])
def test_embed_writes_the_users_anndata_back_whole(capsys, tmp_path, pbmc_run, monkeypatch,
                                                   with_anndata):
    anndata = pytest.importorskip("anndata")
    source = rich_h5ad(tmp_path)
    if not with_anndata:  # the h5py way: the file copied, two entries added
        import builtins

        real_import = builtins.__import__

        def no_anndata(name, *args, **kwargs):
            if name == "anndata":
                raise ImportError(name)
            return real_import(name, *args, **kwargs)

        monkeypatch.setattr(builtins, "__import__", no_anndata)
    out = tmp_path / "pbmc_diffaug.h5ad"
    code, _, err = cli(capsys, "embed", pbmc_run, source, "-o", out, "--obs-key", "bulk_labels")
    monkeypatch.undo()
    assert code == 0, err
    assert ("anndata" in err) == with_anndata and "added" in err
    before, after = anndata.read_h5ad(source), anndata.read_h5ad(out)
    assert after.shape == before.shape == (30, 20)
    dense = [x.toarray() if hasattr(x, "toarray") else np.asarray(x) for x in (after.X, before.X)]
    np.testing.assert_array_equal(*dense)
    assert list(after.var_names) == list(before.var_names)
    assert list(after.obs.columns) == list(before.obs.columns)
    assert (after.obs["bulk_labels"] == before.obs["bulk_labels"]).all()
    for key in ("X_pca", "X_umap"):
        np.testing.assert_array_equal(after.obsm[key], before.obsm[key])
    np.testing.assert_array_equal(after.layers["counts"].toarray(),
                                  before.layers["counts"].toarray())
    assert after.uns["neighbors"]["params"]["n_neighbors"] == 15
    assert after.obsm["X_diffaug"].shape == (30, 8)
    assert after.uns["diffaug"]["label_key"] == "bulk_labels"


def test_a_hostile_sparse_layer_is_refused_before_anndata_reads_it(capsys, tmp_path, pbmc_run):
    source = rich_h5ad(tmp_path)
    with h5py.File(source, "r+") as f:
        indices = f["layers/counts/indices"]
        bad = indices[()]
        bad[0] = 10**6  # a column far outside the matrix
        indices[...] = bad
    out = tmp_path / "x.h5ad"
    code, _, err = cli(capsys, "embed", pbmc_run, source, "-o", out)
    assert code == 2 and "/layers/counts/indices (csr) entry 0" in err, err
    assert not out.exists()


# ---------------------------------------------------- errors that name the real mistake

@pytest.mark.parametrize("args, needles", [
    (["evaluate", DNA_RUN], ["is a run directory", "diffaug embed"]),
    (["generate", OLD / "tabular_run", OLD / "dna_input.fa", "-o", "OUT/x.npy"],
     ["is FASTA (dna)", "is a tabular run", "CSV/TSV"]),
    (["embed", DNA_RUN, DATA / "pbmc68k_30x20_anndata.h5ad", "-o", "OUT/e.h5"],
     ["is AnnData (30 cells x 20 features) (tabular)", "is a dna run"]),
    (["embed", OLD / "dna_embeddings.h5", OLD / "dna_input.fa", "-o", "OUT/e.h5"],
     ["is embeddings HDF5 from `diffaug embed`", "the run directory comes first"]),
    (["embed", DNA_RUN, OLD / "dna_embeddings.h5", "-o", "OUT/e.h5"],
     ["an output", "needs the data itself"]),
    (["evaluate", DATA / "pbmc68k_30x20_anndata.h5ad"], ["--obs-key", "bulk_labels"]),
    (["evaluate", OLD / "dna_input.fa"], ["--features kmer:6"]),
    (["fit", DNA_RUN, "-o", "OUT/r"], ["is a run directory", "fit trains on data"]),
])
def test_errors_say_what_the_input_is_and_what_is_needed(capsys, tmp_path, args, needles):
    args = [str(a).replace("OUT", str(tmp_path)) for a in args]
    code, _, err = cli(capsys, *args)
    assert code == 2 and "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert all(n in line for n in needles), line
    assert not any(tmp_path.iterdir())  # nothing written


def test_inspect_describes_what_diffaug_writes(capsys, tmp_path):
    for path, needle in [(DNA_RUN, "a run directory"), (DNA_RUN / "encoder.pt", "encoder/1"),
                         (OLD / "dna_positives.fa", "records named ID|posK"),
                         (OLD / "image_positives.h5", "generated samples"),
                         (OLD / "tabular_positives.npy", "shape"),
                         (DATA / "pbmc68k_30x20_anndata.h5ad", "obs columns")]:
        code, out, err = cli(capsys, "inspect", path)
        assert code == 0 and needle in out, (path, out, err)
    emb = tmp_path / "emb.h5ad"
    assert cli(capsys, "embed", DNA_RUN, OLD / "dna_input.fa", "-o", emb)[0] == 0
    code, out, _ = cli(capsys, "inspect", emb)
    assert code == 0 and "AnnData embeddings from `diffaug embed`" in out
    assert "written by    diffaug embed" in out


def test_evaluate_scores_the_labelled_rows_and_says_how_many(capsys, tmp_path):
    _, ids, _, _ = read_embeddings(OLD / "dna_embeddings.h5")
    partial = tmp_path / "partial.tsv"  # two classes; every 6th id has no label
    partial.write_text("id\tlabel\n" + "".join(f"{rid}\t{'xy'[i % 2]}\n"
                                                for i, rid in enumerate(ids) if i % 6 != 3))
    code, out, err = cli(capsys, "evaluate", OLD / "dna_embeddings.h5", "--labels", partial,
                         "--protocol", "knn", "--folds", "2", "-o", "-")
    assert code == 0, err
    assert json.loads(out)["n"] == 32 - 5
    assert "scored the 27 rows with a label" in err and "5 rows have none" in err


# ------------------------------------------------------------- a failed fit leaves nothing

def test_a_failed_fit_removes_the_run_directory_it_created(capsys, tmp_path):
    labels = tmp_path / "labels.tsv"
    labels.write_text("id\tlabel\na\tx\n")
    run = tmp_path / "r1"
    code, _, err = cli(capsys, "fit", labels, "-o", run, "--preset", "tiny")
    assert code == 2 and not run.exists(), err
    # a directory an earlier (killed) fit left is reported as such, then reused
    (run / "checkpoints").mkdir(parents=True)
    (run / "log.txt").write_text("12:00:00 ERROR out of memory\n")
    code, _, err = cli(capsys, "embed", run, OLD / "dna_input.fa", "-o", tmp_path / "e.h5")
    assert code == 2 and "failed or was killed before its first checkpoint" in err
    assert "ERROR out of memory" in err


def test_an_existing_directory_is_kept_when_fit_fails(capsys, tmp_path):
    run = tmp_path / "mine"
    run.mkdir()
    (run / "notes.txt").write_text("my notes")
    bad = tmp_path / "bad.fa"
    bad.write_text(">a\nACGT\n>b\nACGT\n>c\nACGT\n>d\nACGT\n>e\nAC*T\n")
    code, _, err = cli(capsys, "fit", bad, "-o", run, "--preset", "tiny")
    assert code == 2 and (run / "notes.txt").read_text() == "my notes", err


# ---------------------------------------------------------------- config discoverable

def test_config_lists_every_key_with_default_range_and_meaning(capsys):
    from diffaug_genomics.config import config_from_dict, resolve_config
    from diffaug_genomics.config_help import NO_MEANING, list_keys
    from diffaug_genomics.config_keys import all_keys

    lines = list_keys("tiny")
    flat = {}

    def walk(d, prefix=""):
        for k, v in d.items():
            walk(v, f"{prefix}{k}.") if isinstance(v, dict) else flat.__setitem__(prefix + k, v)

    walk(resolve_config("tiny").to_dict())
    assert [ln.key for ln in lines] == list(flat) == all_keys()  # read from the dataclasses
    missing = [ln.key for ln in lines if ln.meaning == NO_MEANING]
    assert not missing, f"give these keys a meaning in config_help.MEANINGS: {missing}"
    assert all(ln.default == flat[ln.key] for ln in lines)
    by_key = {ln.key: ln for ln in lines}
    assert by_key["loss.temperature"].values == "number > 0"
    assert by_key["data.policy"].values == "pad | crop | center | window"
    assert by_key["data.length"].values == "integer >= 1 or null"
    assert config_from_dict(resolve_config("tiny").to_dict()).encoder.width == \
        by_key["encoder.width"].default
    code, out, _ = cli(capsys, "config", "--preset", "tiny", "--keys", "bank.*")
    assert code == 0 and out.count("\n    ") >= 10 and "bank.steps = 5" in out
    assert "encoder.width" not in out and max(len(x) for x in out.splitlines()) <= 80


def test_unknown_keys_get_the_closest_match(capsys, example_fasta, tmp_path):
    code, _, err = cli(capsys, "fit", example_fasta, "-o", tmp_path / "r", "--set",
                       "encoder.widht=64")
    assert code == 2 and "did you mean 'encoder.width'?" in err and "diffaug config" in err
    code, _, err = cli(capsys, "config", "--keys", "widht")
    assert code == 2 and "encoder.width" in err
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------ one console for bar and log

def test_log_lines_print_above_the_bar(monkeypatch, capsys):
    from diffaug_genomics import progress as prog

    monkeypatch.setattr(prog, "interactive", lambda: True)
    prog.configure_logging()
    try:
        with prog.progress("embed", total=None, unit="seq") as bar:
            bar.advance(300)
            prog.LOG.warning("a log line")
        with prog.progress("fit", total=7, unit="unit") as bar:
            prog.LOG.info("warmup r0 1/2: loss 4.6829")
            bar.advance(1)
    finally:
        for handler in [h for h in prog.LOG.handlers if getattr(h, "_diffaug", False)]:
            prog.LOG.removeHandler(handler)
    err = capsys.readouterr().err
    lines = [ln.rstrip() for ln in err.replace("\r", "\n").splitlines() if ln.strip()]
    assert any(ln.endswith("WARNING a log line") for ln in lines)
    assert any(ln.endswith("INFO warmup r0 1/2: loss 4.6829") for ln in lines), lines
    assert "/?" not in err and "300 seq" in err


def test_unmeasured_cells_are_empty_and_no_negative_zero(tmp_path):
    import types

    from diffaug_genomics.run_files import RunPaths
    from diffaug_genomics.train.metrics_file import MetricsFile

    m = MetricsFile(RunPaths(tmp_path).metrics, is_main=True, t0=0.0)
    m.log("bank", 1, 0, 0, float("nan"), 0.0, 10.0)
    row = (tmp_path / "metrics.csv").read_text().splitlines()[1].split(",")
    assert row[1] == "bank" and row[5] == ""
    from diffaug_genomics.train.run_diagnostics import stage_summary

    line = stage_summary(types.SimpleNamespace(kind="generator", round=1), [0.0, -0.0001], 32)
    assert "cond_gain 0.000 -> 0.000" in line


def test_report_draws_padding_as_padding():
    from diffaug_genomics.report.positives import pair_markup

    src = np.array([0, 0, 1, 2, 3, 0, 0])
    called = np.array([False, True, True, False, True, True, False])
    text = pair_markup(src, src, called, width=10)
    assert text.splitlines()[0].endswith(".ACNTA.")


def test_merge_writes_what_its_shards_are(capsys, tmp_path):
    out = tmp_path / "emb.h5"
    for i in range(2):
        code, _, err = cli(capsys, "embed", DNA_RUN, OLD / "dna_input.fa", "-o", out, "--shard",
                           f"{i}/2")
        assert code == 0, err
    shards = sorted(tmp_path.glob("emb.shard-*.h5"))
    code, _, err = cli(capsys, "merge", "-o", tmp_path / "emb.fa", *shards)
    assert code == 2 and "merge writes .h5/.hdf5 (embeddings HDF5, as the shards)" in err, err
    code, _, err = cli(capsys, "merge", "-o", out, *shards)
    assert code == 0, err
    code, _, err = cli(capsys, "embed", DNA_RUN, OLD / "dna_input.fa", "-o",
                       tmp_path / "e.h5ad", "--shard", "0/2")
    assert code == 2 and "--shard writes HDF5 shards" in err
