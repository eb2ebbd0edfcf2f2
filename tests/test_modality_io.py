"""Modality detection, the image / tabular / .h5ad readers and their errors, .h5ad round trip."""

from __future__ import annotations

import gzip
from pathlib import Path

import h5py
import numpy as np
import pytest

from diffaug_genomics.errors import InputError
from diffaug_genomics.io.h5ad import (
    is_embeddings_h5ad,
    read_embeddings_h5ad,
    read_h5ad,
    write_embeddings_h5ad,
)
from diffaug_genomics.io.images import read_images, write_images_h5
from diffaug_genomics.io.samples import ReadOptions
from diffaug_genomics.io.tables import read_table, read_tabular
from diffaug_genomics.modalities.detect import detect_modality

DATA = Path(__file__).resolve().parent / "data"
NO = ReadOptions()


def write_png(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


# ----------------------------------------------------------------------------------- detection

def test_detection_by_content(tmp_path, example_fasta, example_rows):
    np.save(tmp_path / "table.npy", np.zeros((5, 3)))
    np.save(tmp_path / "gray.npy", np.zeros((5, 8, 8)))
    np.save(tmp_path / "rgb.npy", np.zeros((5, 8, 8, 3), np.uint8))
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    (tmp_path / "t.tsv.gz").write_bytes(gzip.compress(b"a\tb\n1\t2\n"))
    write_images_h5(tmp_path / "img.h5", np.zeros((3, 4, 4), np.uint8))
    write_png(tmp_path / "folder" / "a" / "x.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "reads.txt").write_text(">r1\nACGT\n")
    from diffaug_genomics.io.onehot_writer import OneHotWriter

    with OneHotWriter(tmp_path / "onehot.h5", 200, {}) as w:
        w.append(example_rows[:2], ["a", "b"], np.array([200, 200]))
    expected = {"table.npy": "tabular", "gray.npy": "image", "rgb.npy": "image",
                "t.csv": "tabular", "t.tsv.gz": "tabular", "img.h5": "image",
                "folder": "image", "reads.txt": "dna", "onehot.h5": "dna"}
    for name, kind in expected.items():
        assert detect_modality(tmp_path / name) == kind, name
    assert detect_modality(example_fasta) == "dna" and detect_modality("-") == "dna"
    assert detect_modality(DATA / "pbmc68k_30x20_anndata.h5ad") == "tabular"


@pytest.mark.parametrize("make, needle", [
    (lambda p: None, "no such file"),
    (lambda p: p.mkdir(), "no PNG or JPEG images"),
    (lambda p: np.save(p, np.zeros((2, 3, 4, 5, 6))), "expected (N, D)"),
    (lambda p: h5py.File(p, "w").close(), "neither a diffaug one-hot file"),
    (lambda p: p.write_bytes(b"\x00\x01binary junk"), "--modality"),
])
def test_detection_errors_name_the_input(tmp_path, make, needle):
    path = tmp_path / ("thing.npy" if "N, D" in needle else "thing")
    make(path)
    with pytest.raises(InputError) as exc:
        detect_modality(path)
    assert needle in str(exc.value) and str(path) in str(exc.value)


# --------------------------------------------------------------------------------- CSV / TSV

def test_csv_with_ids_and_label_column(tmp_path):
    path = tmp_path / "cells.csv"
    path.write_text(",g1,type,g2\nc1,1.5,T,2\nc2,-3,B,4e-1\n\nc3,0,T,7\n")
    s = read_table(path, ReadOptions(label_column="type"))
    assert s.values.dtype == np.float32 and s.values.shape == (3, 2)
    np.testing.assert_allclose(s.values, [[1.5, 2], [-3, 0.4], [0, 7]])
    assert s.ids == ["c1", "c2", "c3"] and s.labels == ["T", "B", "T"]
    assert s.feature_names == ["g1", "g2"] and s.source_format == "csv"
    tsv = tmp_path / "x.tsv"
    tsv.write_text("a\tb\n1\t2\n3\t4\n")
    s = read_tabular(tsv, NO)
    assert s.ids == ["0", "1"] and s.labels is None and s.source_format == "tsv"


@pytest.mark.parametrize("text, needle", [
    ("a,b\n1,2\n3\n", "line 3: expected 2 fields (as in the header), found 1"),
    ("a,b\n1,2\n3,x7\n", "line 3: column 'b': not a number: 'x7'"),
    ("a,b\n1,\n", "line 2: column 'b': empty cell"),
    ("a,b\n1,2\nnan,2\n", "line 3: column 'a': nan is not a finite number"),
    ("a,b\n1,inf\n", "line 2: column 'b': inf is not a finite number"),
    ("1,2\n3,4\n", "line 1: the first line looks like data"),
    ("a,b\n", "no data rows"),
    ("", "empty file"),
])
def test_bad_tables_name_file_line_and_column(tmp_path, text, needle):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(InputError) as exc:
        read_tabular(path, NO)
    assert str(exc.value).startswith(f"{path}: ") and needle in str(exc.value)


def test_table_option_errors(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="no column 'y'"):
        read_tabular(path, ReadOptions(label_column="y"))
    with pytest.raises(InputError, match="--obs-key applies to .h5ad"):
        read_tabular(path, ReadOptions(obs_key="y"))
    np.save(tmp_path / "t.npy", np.array([[1.0, np.nan]]))
    with pytest.raises(InputError, match="row 0, column 1: nan"):
        read_tabular(tmp_path / "t.npy", NO)


# --------------------------------------------------------------------------------------- .h5ad

def test_h5ad_written_by_anndata(tmp_path):
    s = read_h5ad(DATA / "pbmc68k_30x20_anndata.h5ad", ReadOptions(obs_key="bulk_labels"))
    assert s.values.shape == (30, 20) and s.values.dtype == np.float32
    assert s.ids[0] == "AAAGCCTGGCTAAC-1" and s.feature_names[0] == "HES4"
    assert s.labels[:2] == ["CD14+ Monocyte", "Dendritic"]
    assert abs(float(s.values[0, 4]) - 3.386) < 1e-3  # a non-zero of the sparse matrix
    with pytest.raises(InputError, match="no column 'cell_type'.*bulk_labels"):
        read_h5ad(DATA / "pbmc68k_30x20_anndata.h5ad", ReadOptions(obs_key="cell_type"))


def _old_layout(path: Path, x: np.ndarray, labels_codes: np.ndarray, categories: list[str]) -> None:
    """The layout of scanpy's bundled pbmc68k_reduced.h5ad: obs a compound dataset."""
    with h5py.File(path, "w") as f:
        f["X"] = x
        obs = np.zeros(len(x), dtype=[("index", "S8"), ("bulk_labels", "i1")])
        obs["index"] = [f"cell{i}".encode() for i in range(len(x))]
        obs["bulk_labels"] = labels_codes
        f["obs"] = obs
        var = np.zeros(x.shape[1], dtype=[("index", "S8")])
        var["index"] = [f"g{i}".encode() for i in range(x.shape[1])]
        f["var"] = var
        f["uns/bulk_labels_categories"] = np.array([c.encode() for c in categories])


def test_h5ad_old_layout_and_anndata07_categoricals(tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    _old_layout(tmp_path / "old.h5ad", x, np.array([0, 1, 1, -1]), ["A", "B"])
    s = read_h5ad(tmp_path / "old.h5ad", ReadOptions(obs_key="bulk_labels"))
    np.testing.assert_array_equal(s.values, x)
    assert s.ids == ["cell0", "cell1", "cell2", "cell3"] and s.labels == ["A", "B", "B", ""]
    with h5py.File(tmp_path / "v07.h5ad", "w") as f:  # anndata 0.7: obs/__categories
        f["X"] = x
        f["obs/_index"] = np.array([b"a", b"b", b"c", b"d"])
        f["obs"].attrs["_index"] = "_index"
        f["obs/kind"] = np.array([1, 0, 1, 0], dtype=np.int8)
        f["obs/__categories/kind"] = np.array([b"x", b"y"])
    s = read_h5ad(tmp_path / "v07.h5ad", ReadOptions(obs_key="kind"))
    assert s.ids == ["a", "b", "c", "d"] and s.labels == ["y", "x", "y", "x"]


def test_h5ad_bad_values_name_the_cell(tmp_path):
    x = np.ones((3, 2), np.float32)
    x[2, 1] = np.inf
    _old_layout(tmp_path / "bad.h5ad", x, np.zeros(3, np.int8), ["A"])
    with pytest.raises(InputError, match="cell 'cell2' \\(row 2\\), gene 'g1': inf"):
        read_h5ad(tmp_path / "bad.h5ad", NO)


def test_embeddings_h5ad_round_trip(tmp_path):
    emb = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    ids = [f"c{i}" for i in range(5)]
    labels = ["T", "B", "T", "NK", "B"]
    path = tmp_path / "emb.h5ad"
    write_embeddings_h5ad(path, emb, ids, labels, "cell_type", {"config_hash": "abc", "n": 3})
    assert is_embeddings_h5ad(path) and detect_modality(path) == "tabular"
    got, got_ids, got_labels, info = read_embeddings_h5ad(path, "cell_type")
    np.testing.assert_array_equal(got, emb)
    assert got_ids == ids and got_labels == labels and info["config_hash"] == "abc"


def test_embeddings_h5ad_reads_in_anndata(tmp_path):
    anndata = pytest.importorskip("anndata")
    emb = np.eye(4, 2, dtype=np.float32)
    path = tmp_path / "emb.h5ad"
    write_embeddings_h5ad(path, emb, list("abcd"), list("xyxy"), "kind", {"run_dir": "/r"})
    a = anndata.read_h5ad(path)
    assert a.n_obs == 4 and list(a.obs_names) == list("abcd")
    np.testing.assert_array_equal(a.obsm["X_diffaug"], emb)
    assert list(a.obs["kind"]) == list("xyxy") and a.uns["diffaug"]["run_dir"] == "/r"


# -------------------------------------------------------------------------------------- images

def test_image_folder_labels_ids_and_channels(tmp_path):
    rng = np.random.default_rng(0)
    write_png(tmp_path / "d" / "cat" / "b.png", rng.integers(0, 255, (6, 5), dtype=np.uint8))
    write_png(tmp_path / "d" / "cat" / "a.png", rng.integers(0, 255, (6, 5, 3), dtype=np.uint8))
    write_png(tmp_path / "d" / "dog" / "c.png", rng.integers(0, 255, (6, 5), dtype=np.uint8))
    s = read_images(tmp_path / "d", NO)
    assert s.values.shape == (3, 6, 5, 3) and s.values.dtype == np.uint8  # gray -> RGB
    assert s.ids == ["cat/a.png", "cat/b.png", "dog/c.png"] and s.labels == ["cat", "cat", "dog"]


@pytest.mark.parametrize("case, needle", [
    ("mixed", "a/y.png: image is 5x4 (height x width) but a/x.png is 4x4"),
    ("corrupt", "a/y.png: cannot read image"),
    ("empty", "folder holds no PNG or JPEG images"),
])
def test_bad_image_folders_name_the_image(tmp_path, case, needle):
    folder = tmp_path / "imgs"
    folder.mkdir()
    if case != "empty":
        write_png(folder / "a" / "x.png", np.zeros((4, 4), np.uint8))
        if case == "mixed":
            write_png(folder / "a" / "y.png", np.zeros((5, 4), np.uint8))
        else:
            (folder / "a" / "y.png").write_bytes(b"not a png")
    with pytest.raises(InputError) as exc:
        read_images(folder, NO)
    assert needle in str(exc.value)


def test_image_arrays(tmp_path):
    arr = np.random.default_rng(1).random((4, 6, 6)).astype(np.float32)
    np.save(tmp_path / "a.npy", arr)
    s = read_images(tmp_path / "a.npy", NO)
    assert s.values.shape == (4, 6, 6, 1) and s.ids == ["0", "1", "2", "3"]
    write_images_h5(tmp_path / "a.h5", arr, ids=list("wxyz"), labels=list("ppqq"))
    s = read_images(tmp_path / "a.h5", NO)
    assert s.ids == list("wxyz") and s.labels == list("ppqq")
    arr[2, 0, 0] = np.nan
    np.save(tmp_path / "bad.npy", arr)
    with pytest.raises(InputError, match="image 2 holds NaN"):
        read_images(tmp_path / "bad.npy", NO)
