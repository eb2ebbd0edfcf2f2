"""encode_records / encode_fasta against an independent per-character encoder."""

from __future__ import annotations

import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diffaug_genomics.alphabet import decode
from diffaug_genomics.encode import encode_fasta, encode_records
from diffaug_genomics.errors import InputError
from diffaug_genomics.io.h5 import ONEHOT_SCHEMA, read_strings

CHANNEL = {"A": 0, "C": 1, "G": 2, "T": 3, "U": 3}


def ref_row(seq: str, offset: int, L: int) -> np.ndarray:
    """``seq`` placed at ``offset`` in an all-zero (L, 4) row, one character at a time."""
    row = np.zeros((L, 4), dtype=np.uint8)
    for i, ch in enumerate(seq):
        if ch.upper() in CHANNEL:
            row[offset + i, CHANNEL[ch.upper()]] = 1
    return row


def ref_encode(rid: str, seq: str, L: int, policy: str, stride: int | None = None):
    """[(id, row, length)] for one record, written from the rules in the issue."""
    n = len(seq)
    if policy in ("pad", "crop"):
        return [(rid, ref_row(seq[:L], 0, L), min(n, L))]
    if policy == "center":
        if n >= L:
            start = (n - L) // 2
            return [(rid, ref_row(seq[start:start + L], 0, L), L)]
        return [(rid, ref_row(seq, (L - n) // 2, L), n)]
    stride = stride or L
    if n <= L:
        return [(f"{rid}:0-{n}", ref_row(seq, 0, L), n)]
    out, start = [], 0
    while start + L <= n:
        out.append((f"{rid}:{start}-{start + L}", ref_row(seq[start:start + L], 0, L), L))
        start += stride
    if out[-1][0].split("-")[-1] != str(n):
        out.append((f"{rid}:{n - L}-{n}", ref_row(seq[n - L:], 0, L), L))
    return out


RECORDS = [("short", "ACgtN"), ("exact", "ACGTACGTAC"), ("long", "aacCGGTTuuRYNNACGTACGTTT"),
           ("odd", "GATTACA"), ("one", "T")]


def run(records, L, policy, stride=None, chunk_records=4096):
    chunks = list(encode_records([(r, s.encode()) for r, s in records], L, policy, stride,
                                 chunk_records))
    onehot = np.concatenate([c.onehot for c in chunks])
    ids = [i for c in chunks for i in c.ids]
    lengths = np.concatenate([c.lengths for c in chunks])
    return chunks, onehot, ids, lengths


CASES = [(p, L, None) for p in ("pad", "crop", "center", "window") for L in (1, 6, 10, 11)]
CASES += [("window", L, 3) for L in (1, 6, 10, 11)]


@pytest.mark.parametrize("policy, L, stride", CASES)
def test_policies_match_reference(policy, L, stride):
    chunks, onehot, ids, lengths = run(RECORDS, L, policy, stride, chunk_records=4)
    expected = [x for rid, seq in RECORDS for x in ref_encode(rid, seq, L, policy, stride)]
    assert ids == [e[0] for e in expected]
    np.testing.assert_array_equal(onehot, np.stack([e[1] for e in expected]))
    assert lengths.tolist() == [e[2] for e in expected] and lengths.dtype == np.int32
    assert onehot.dtype == np.uint8 and onehot.shape[1:] == (L, 4)
    assert all(len(c.ids) <= 4 for c in chunks)
    assert sum(c.records for c in chunks) == len(RECORDS)
    assert sum(c.n_bases for c in chunks) == lengths.sum()
    called = sum(int(e[1].sum()) for e in expected)
    assert sum(c.n_ambiguous for c in chunks) == lengths.sum() - called
    if policy == "window":
        assert sum(c.windows for c in chunks) == len(ids)
    else:
        assert sum(c.padded for c in chunks) == sum(len(s) < L for _, s in RECORDS)
        assert sum(c.cropped for c in chunks) == sum(len(s) > L for _, s in RECORDS)


def test_window_tiles_long_record_across_chunks():
    seq = "ACGT" * 250  # 1000 bases
    chunks, onehot, ids, lengths = run([("chr", seq)], 100, "window", 70, chunk_records=5)
    starts = [int(i.split(":")[1].split("-")[0]) for i in ids]
    assert starts == list(range(0, 901, 70)) + [900]  # tail window aligned to the end
    assert [len(c.ids) for c in chunks] == [5, 5, 4]
    assert decode(onehot[-1]) == seq[900:]
    assert set(lengths.tolist()) == {100}


def test_window_stride_larger_than_length_leaves_gaps():
    _, _, ids, _ = run([("r", "A" * 50)], 10, "window", 20)
    assert ids == ["r:0-10", "r:20-30", "r:40-50"]


@pytest.mark.parametrize("kwargs, word", [
    ({"length": 0}, "--length"), ({"length": -3}, "--length"), ({"length": 5, "policy": "x"},
                                                                  "unknown policy"),
    ({"length": 5, "stride": 2}, "--stride only"), ({"length": 5, "policy": "window",
                                                     "stride": 0}, "--stride must"),
])
def test_bad_options(kwargs, word):
    with pytest.raises(InputError, match=word):
        list(encode_records([("a", b"ACGT")], **kwargs))


def test_invalid_byte_from_other_sources_names_record():
    with pytest.raises(InputError) as info:
        list(encode_records([("a", b"ACGT"), ("b", b"AC-T")], 4))
    assert info.value.record == "b" and "'-'" in info.value.reason


def write_fasta(path: Path, records, width: int = 0) -> Path:
    with open(path, "w", newline="") as fh:
        for rid, seq in records:
            lines = [seq[i:i + width] for i in range(0, len(seq), width)] if width else [seq]
            fh.write(f">{rid}\n" + "\n".join(lines) + "\n")
    return path


def test_encode_fasta_default_length_is_longest_and_schema(tmp_path):
    src = write_fasta(tmp_path / "in.fa", RECORDS, width=7)
    out = tmp_path / "out.h5"
    summary = encode_fasta(src, out, show_progress=False)
    L = max(len(s) for _, s in RECORDS)
    with h5py.File(out) as f:
        assert f.attrs["schema"] == ONEHOT_SCHEMA and f.attrs["length"] == L
        assert f.attrs["policy"] == "pad" and f.attrs["alphabet"] == "ACGT"
        assert f.attrs["source"] == "in.fa" and len(f.attrs["source_sha256"]) == 64
        assert f.attrs["tool_version"] and f.attrs["created"]
        assert "labels" not in f
        np.testing.assert_array_equal(
            f["onehot"][()], np.stack([ref_encode(r, s, L, "pad")[0][1] for r, s in RECORDS]))
        assert read_strings(f["ids"]) == [r for r, _ in RECORDS]
        assert f["lengths"][()].tolist() == [len(s) for _, s in RECORDS]
    assert summary.records == summary.rows == 5 and summary.padded == 4
    line = summary.line()
    for word in ("5 records", "4 padded", "0 cropped", "0 windows", "N fraction", "records/s",
                 "MB/s"):
        assert word in line


def test_labels_and_windows_take_record_label(tmp_path):
    src = write_fasta(tmp_path / "in.fa", RECORDS)
    labels = tmp_path / "labels.tsv"
    labels.write_text("id\tlabel\n" + "".join(f"{r}\tL{r}\n" for r, _ in RECORDS[::-1]))
    out = tmp_path / "w.h5"
    encode_fasta(src, out, length=4, policy="window", stride=2, labels=labels,
                 show_progress=False)
    with h5py.File(out) as f:
        ids, labs = read_strings(f["ids"]), read_strings(f["labels"])
        assert f.attrs["stride"] == 2
    assert len(ids) == len(labs) and all(lab == "L" + i.split(":")[0] for i, lab in
                                         zip(ids, labs, strict=True))


def test_missing_label_is_an_error_and_leaves_no_output(tmp_path):
    src = write_fasta(tmp_path / "in.fa", RECORDS)
    labels = tmp_path / "labels.tsv"
    labels.write_text("id\tlabel\nshort\ta\nexact\tb\n")
    out = tmp_path / "out.h5"
    with pytest.raises(InputError) as info:
        encode_fasta(src, out, length=5, labels=labels, show_progress=False)
    assert info.value.record == "long" and info.value.path == str(labels)
    assert set(tmp_path.iterdir()) == {src, labels}


def test_existing_output_needs_force(tmp_path):
    src = write_fasta(tmp_path / "in.fa", RECORDS)
    out = tmp_path / "out.h5"
    out.write_bytes(b"keep me")
    with pytest.raises(InputError, match="--force"):
        encode_fasta(src, out, length=5, show_progress=False)
    assert out.read_bytes() == b"keep me"
    encode_fasta(src, out, length=5, force=True, show_progress=False)
    assert h5py.is_hdf5(out)


def test_real_example_matches_plain_reader(tmp_path, example_fasta, example_labels):
    from conftest import read_example_rows

    out = tmp_path / "ex.h5"
    summary = encode_fasta(example_fasta, out, length=200, labels=example_labels,
                           show_progress=False)
    assert summary.rows == 500 and summary.padded == summary.cropped == 0
    with h5py.File(out) as f:
        np.testing.assert_array_equal(f["onehot"][()], read_example_rows(example_fasta))
        labels = read_strings(f["labels"])
    assert {lab: labels.count(lab) for lab in set(labels)} == {
        "GM12878": 125, "HepG2": 125, "K562": 125, "hESCT0": 125}


def expected_decoded(seq: str) -> str:
    return "".join("T" if c in "Uu" else c.upper() if c.upper() in "ACGT" else "N" for c in seq)


@settings(max_examples=30, deadline=None)
@given(seqs=st.lists(st.text(alphabet="ACGTUNRYSWKMBDHVacgtunryswkmbdhv", min_size=1,
                             max_size=120), min_size=1, max_size=10),
       width=st.integers(0, 70), length=st.one_of(st.none(), st.integers(1, 150)))
def test_property_fasta_roundtrips_through_hdf5(seqs, width, length):
    records = [(f"r{i}", s) for i, s in enumerate(seqs)]
    with tempfile.TemporaryDirectory() as tmp:
        src = write_fasta(Path(tmp) / "in.fa", records, width)
        out = Path(tmp) / "out.h5"
        encode_fasta(src, out, length=length, show_progress=False)
        with h5py.File(out) as f:
            decoded = decode(f["onehot"][()])
            lengths = f["lengths"][()]
    L = length or max(map(len, seqs))
    for (_, seq), text, n in zip(records, decoded, lengths, strict=True):
        assert n == min(len(seq), L)
        assert text[:n] == expected_decoded(seq)[:n]
        assert set(text[n:]) <= {"N"}


def test_read_labels_and_align(tmp_path):
    from diffaug_genomics.io.labels import align_labels, read_labels

    path = tmp_path / "l.tsv"
    path.write_text("# comment\nlabel\tid\textra\r\nx\tr1\t.\n\ny\tr2\t.\n")
    mapping = read_labels(path)
    assert mapping == {"r1": "x", "r2": "y"}
    assert align_labels(["r2", "r1:0-200", "r1"], mapping, path) == ["y", "x", "x"]
    with pytest.raises(InputError) as info:
        align_labels(["r1", "r3:0-5"], mapping, path)
    assert info.value.record == "r3:0-5" and info.value.path == str(path)


@pytest.mark.parametrize("text, line, reason", [
    ("name\tclass\na\tb\n", 1, "'id' and 'label'"),
    ("id\tlabel\na\n", 2, "at least 2"),
    ("id\tlabel\na\tx\na\ty\n", 3, "duplicate id 'a'"),
    ("id\tlabel\n\tx\n", 2, "empty id"),
])
def test_bad_labels_files(tmp_path, text, line, reason):
    from diffaug_genomics.io.labels import read_labels

    path = tmp_path / "l.tsv"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        read_labels(path)
    assert reason in info.value.reason and info.value.line == line
