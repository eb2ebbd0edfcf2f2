"""read_fasta: formats, compression, block boundaries and every malformed input."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import subprocess
import sys

import pytest
from Bio import bgzf
from hypothesis import given, settings
from hypothesis import strategies as st

from diffaug_genomics.errors import InputError
from diffaug_genomics.io import fasta
from diffaug_genomics.io.fasta import ReadStats, read_fasta

RECORDS = [("r1", b"ACGTACGTNNacgt"), ("r2", b"GGGGCCCCAAAATTTTURYKM"), ("r3", b"a")]


def ref_parse(text: bytes) -> list[tuple[str, bytes]]:
    """Line-by-line reference parser."""
    out: list[tuple[str, list[bytes]]] = []
    for line in text.replace(b"\r", b"").split(b"\n"):
        if line.startswith(b">"):
            out.append((line[1:].split()[0].decode(), []))
        elif line.strip():
            out[-1][1].append(line.strip())
    return [(rid, b"".join(parts)) for rid, parts in out]


def to_fasta(records, width: int = 0, eol: bytes = b"\n") -> bytes:
    chunks = []
    for rid, seq in records:
        chunks.append(b">" + rid.encode() + b" some description" + eol)
        lines = [seq[i:i + width] for i in range(0, len(seq), width)] if width else [seq]
        chunks.append(eol.join(lines) + eol)
    return b"".join(chunks)


def write(tmp_path, data: bytes, name: str = "in.fa"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_ids_are_first_word_and_sequences_keep_case(tmp_path):
    path = write(tmp_path, to_fasta(RECORDS))
    assert list(read_fasta(path)) == RECORDS
    assert list(read_fasta(str(path))) == RECORDS


@pytest.mark.parametrize("width", [0, 1, 5, 60])
@pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
def test_wrapped_lines_and_crlf(tmp_path, width, eol):
    path = write(tmp_path, to_fasta(RECORDS, width, eol))
    assert list(read_fasta(path)) == RECORDS


def test_blank_lines_trailing_blanks_bom_and_no_final_newline(tmp_path):
    data = b"\xef\xbb\xbf\n\n>a x\nAC GT \n\n\tTT\n\n>b\nGG"
    assert list(read_fasta(write(tmp_path, data))) == [("a", b"ACGTTT"), ("b", b"GG")]


@pytest.mark.parametrize("block", [1, 2, 3, 7, 64])
def test_block_boundaries_anywhere(tmp_path, monkeypatch, block):
    monkeypatch.setattr(fasta, "BLOCK_BYTES", block)
    records = [(f"s{i}", b"ACGTN"[i % 5:] * (i + 1)) for i in range(30)]
    data = to_fasta(records, width=7, eol=b"\r\n")
    assert list(read_fasta(write(tmp_path, data))) == ref_parse(data) == records


def test_gzip_bgzip_and_multimember_detected_by_content(tmp_path):
    data = to_fasta(RECORDS, width=4)
    plain_name = write(tmp_path, gzip.compress(data), "looks_plain.fa")  # no .gz suffix
    assert list(read_fasta(plain_name)) == RECORDS
    bgz = tmp_path / "in.fa.bgz"
    with bgzf.BgzfWriter(str(bgz), "wb") as fh:
        fh.write(data)
    assert bgz.read_bytes()[12:14] == b"BC"  # a real BGZF block header
    assert list(read_fasta(bgz)) == RECORDS
    half = len(data) // 2
    multi = gzip.compress(data[:half]) + gzip.compress(data[half:])
    assert list(read_fasta(write(tmp_path, multi, "multi.gz"))) == RECORDS


def test_binary_stream_and_stats(tmp_path):
    raw = gzip.compress(to_fasta(RECORDS))
    stats = ReadStats()
    assert list(read_fasta(io.BytesIO(raw), stats=stats)) == RECORDS
    assert stats.bytes_read == len(raw) and stats.compressed
    assert stats.sha256 == hashlib.sha256(raw).hexdigest()
    assert stats.records == 3 and stats.bases == sum(len(s) for _, s in RECORDS)


def test_stdin_dash_with_gzip(tmp_path):
    code = ("import sys; from diffaug_genomics.io.fasta import read_fasta\n"
            "for rid, seq in read_fasta('-'): print(rid, seq.decode())")
    proc = subprocess.run([sys.executable, "-c", code], input=gzip.compress(to_fasta(RECORDS, 3)),
                          capture_output=True, check=True)
    assert proc.stdout.decode().split() == [x for r in RECORDS for x in (r[0], r[1].decode())]


def test_real_example(example_fasta, example_labels):
    records = list(read_fasta(example_fasta))
    assert len(records) == 500 and {len(s) for _, s in records} == {200}
    ids = [line.split("\t")[0] for line in example_labels.read_text().splitlines()[1:]]
    assert [rid for rid, _ in records] == ids


def error_of(path, **kw) -> InputError:
    with pytest.raises(InputError) as info:
        list(read_fasta(path, **kw))
    return info.value


@pytest.mark.parametrize("data, reason, line", [
    (b"", "empty file", None),
    (b"\n  \n\r\n", "empty file", None),
    (b"\x00\x01\x02binary\xff", "binary", 1),
    (b"\x89PNG\r\n\x1a\n", "binary", 1),
    (b"@read1\nACGT\n+\nIIII\n", "FASTQ", 1),
    (b"\nACGT\n>r\nAC\n", "before the first '>'", 2),
    (b">\nACGT\n", "empty header", 1),
])
def test_not_fasta(tmp_path, data, reason, line):
    path = write(tmp_path, data)
    err = error_of(path)
    assert reason in err.reason and err.path == str(path) and err.line == line


def test_truncated_and_corrupt_gzip(tmp_path):
    raw = gzip.compress(to_fasta(RECORDS * 1, 3) + b">x\n" + b"ACGT" * 5000)
    err = error_of(write(tmp_path, raw[: len(raw) // 2], "cut.fa.gz"))
    assert "truncated gzip" in err.reason
    bad = raw[:20] + bytes(b ^ 0xFF for b in raw[20:40]) + raw[40:]
    assert "gzip" in error_of(write(tmp_path, bad, "bad.fa.gz")).reason
    assert "empty file" in error_of(write(tmp_path, gzip.compress(b""), "e.gz")).reason


def test_other_compression_is_named(tmp_path):
    assert "bzip2" in error_of(write(tmp_path, bz2.compress(to_fasta(RECORDS)))).reason


@pytest.mark.parametrize("data, record, line", [
    (b">a\nACGT\n>b\n>c\nAC\n", "b", 3),
    (b">a\nACGT\n>b\n\n\n", "b", 3),
    (b">a\nACGT\n>b", "b", 3),
])
def test_empty_sequence(tmp_path, data, record, line):
    err = error_of(write(tmp_path, data))
    assert err.reason == "empty sequence" and err.record == record and err.line == line


@pytest.mark.parametrize("char", ["1", "*", "-", ".", "!", "X", "é"])
def test_invalid_character_names_record_line_and_char(tmp_path, char):
    data = f">ok\nACGT\n>bad desc\nACGT\nAC{char}T\n".encode()
    err = error_of(write(tmp_path, data))
    assert err.record == "bad" and err.line == 5
    shown = char if len(char.encode()) == 1 else "byte 0x"
    assert shown in err.reason and "invalid character" in err.reason


def test_duplicate_id(tmp_path):
    err = error_of(write(tmp_path, b">a\nAC\n>b\nGG\n>a second\nTT\n"))
    assert "duplicate" in err.reason and err.record == "a" and err.line == 5


def test_error_lines_are_right_across_small_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(fasta, "BLOCK_BYTES", 5)
    data = b"\n\n\n" + to_fasta([(f"s{i}", b"ACGT" * 3) for i in range(10)], 4) + b">z\nA-C\n"
    err = error_of(write(tmp_path, data))
    assert err.record == "z" and err.line == 3 + 10 * 4 + 2


def test_missing_path_and_directory(tmp_path):
    assert error_of(tmp_path / "nope.fa").reason == "no such file"
    assert "directory" in error_of(tmp_path).reason


def test_message_names_file_line_record(tmp_path):
    path = write(tmp_path, b">a\nAC*\n")
    assert str(error_of(path)).startswith(f"{path}: line 2: record 'a': invalid character '*'")


seq_st = st.text(alphabet="ACGTUNRYacgtunry", min_size=1, max_size=300).map(str.encode)


@settings(max_examples=40, deadline=None)
@given(seqs=st.lists(seq_st, min_size=1, max_size=12), width=st.integers(0, 80),
       crlf=st.booleans(), block=st.integers(1, 200))
def test_property_random_fasta_parses_exactly(seqs, width, crlf, block):
    records = [(f"id{i}", s) for i, s in enumerate(seqs)]
    data = to_fasta(records, width, b"\r\n" if crlf else b"\n")
    old = fasta.BLOCK_BYTES
    fasta.BLOCK_BYTES = block
    try:
        assert list(read_fasta(io.BytesIO(data))) == records
    finally:
        fasta.BLOCK_BYTES = old


def test_committed_bgzip_fixture_matches_example(example_fasta):
    from pathlib import Path

    path = Path(__file__).parent / "data" / "dhs_20_crlf_wrapped.fa.bgz"
    assert path.read_bytes()[:4] == b"\x1f\x8b\x08\x04"  # gzip with BGZF extra field
    expected = list(read_fasta(example_fasta))[:20]
    assert list(read_fasta(path)) == expected


def test_seen_ids_across_many_chunks(tmp_path, monkeypatch):
    seen = fasta.SeenIds()
    for start in range(0, 5000, 37):
        assert seen.add([f"id{i}" for i in range(start, min(start + 37, 5000))]) is None
    assert len(seen) == 5000 and len(seen.runs) <= 14  # runs are merged
    assert seen.add(["new", "id4321", "id7"]) == 1
    assert seen.add(["x", "y", "x"]) == 2
    monkeypatch.setattr(fasta, "BLOCK_BYTES", 64)
    records = [(f"s{i}", b"ACGT") for i in range(300)] + [("s17", b"AC")]
    err = error_of(write(tmp_path, to_fasta(records)))
    assert err.record == "s17" and err.line == 601
