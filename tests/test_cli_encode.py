"""`diffaug encode` through the real command line: success paths and every bad input."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from diffaug_genomics.alphabet import decode

CLI = [sys.executable, "-m", "diffaug_genomics_cli.main"]
GOOD = b">a desc\nACGTN\nacgu\n>b\nGGCC\n"


def diffaug(*args, stdin: bytes | None = None, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "DIFFAUG_NO_BAR": "1"}
    return subprocess.run([*CLI, *map(str, args)], input=stdin, capture_output=True, env=env,
                          cwd=cwd)


def assert_clean_error(proc, *words: str) -> str:
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("diffaug: error: "), err
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def test_help_does_not_import_torch_or_h5py():
    code = ("import sys\nfrom diffaug_genomics_cli.main import main\n"
            "for argv in (['--help'], ['encode', '--help'], ['inspect', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit as e:\n        assert e.code == 0\n"
            "print('LOADED', 'torch' in sys.modules, 'h5py' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED False False" in proc.stdout
    assert "--policy" in proc.stdout and "--strand-aware" in proc.stdout


def test_encode_file_prints_summary(tmp_path):
    src = tmp_path / "in.fa"
    src.write_bytes(GOOD)
    out = tmp_path / "out.h5"
    proc = diffaug("encode", src, "-o", out, "--length", 6, "--policy", "center")
    assert proc.returncode == 0, proc.stderr
    last = proc.stderr.decode().strip().splitlines()[-1]
    assert last.startswith("encoded 2 records -> 2 rows (L=6, center)") and "records/s" in last
    assert proc.stdout == b""
    with h5py.File(out) as f:
        assert decode(f["onehot"][()]) == ["CGTNAC", "NGGCCN"]  # ACGTNACGU cropped; GGCC padded


def test_stdin_gzip_without_length_spools(tmp_path):
    out = tmp_path / "out.h5"
    proc = diffaug("encode", "-", "-o", out, stdin=gzip.compress(GOOD))
    assert proc.returncode == 0, proc.stderr
    with h5py.File(out) as f:
        assert f.attrs["length"] == 9 and f.attrs["source"] == "<stdin>"
        assert decode(f["onehot"][()]) == ["ACGTNACGT", "GGCCNNNNN"]
        assert f["lengths"][()].tolist() == [9, 4]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5"]  # spool removed


def test_labels_via_cli(tmp_path, example_fasta, example_labels):
    out = tmp_path / "ex.h5"
    proc = diffaug("encode", example_fasta, "-o", out, "--length", 200, "--labels",
                   example_labels)
    assert proc.returncode == 0, proc.stderr
    with h5py.File(out) as f:
        assert f["labels"].shape == (500,)


BAD_FASTA = {
    "empty": (b"", "empty file"),
    "binary": (bytes(range(256)) * 4, "binary data"),
    "fastq": (b"@r1\nACGT\n+\nIIII\n", "FASTQ"),
    "headerless": (b"ACGTACGT\n>r\nAC\n", "before the first '>' header"),
    "truncated_gzip": (gzip.compress(b"".join(b">r%d\nACGT\n" % i for i in range(99)))[:60],
                       "truncated gzip"),
    "duplicate_ids": (b">a\nAC\n>a\nGG\n", "duplicate record id 'a'"),
    "invalid_char": (b">a\nAC\n>b\nAC1T\n", "record 'b': invalid character '1'"),
}


def test_empty_records_are_skipped_and_said(tmp_path):
    src = tmp_path / "some_empty.fa"
    src.write_bytes(b">a\nACGT\n>b\n>c\nAC\n>d\n\n")
    proc = diffaug("encode", src, "-o", tmp_path / "out.h5")
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    assert "2 empty records skipped ('b', 'd')" in err
    with h5py.File(tmp_path / "out.h5") as f:
        assert [i.decode() for i in f["ids"][()]] == ["a", "c"]
    only_empty = tmp_path / "only_empty.fa"
    only_empty.write_bytes(b">b\n>d\n")
    assert_clean_error(diffaug("encode", only_empty, "-o", tmp_path / "x.h5"), "no records")


@pytest.mark.parametrize("case", sorted(BAD_FASTA))
def test_bad_fasta_input(tmp_path, case):
    data, reason = BAD_FASTA[case]
    src = tmp_path / f"{case}.fa"
    src.write_bytes(data)
    out = tmp_path / "out.h5"
    assert_clean_error(diffaug("encode", src, "-o", out), str(src), reason)
    assert sorted(p.name for p in tmp_path.iterdir()) == [src.name]  # no output, no temp file


def test_bad_fasta_on_stdin(tmp_path):
    out = tmp_path / "out.h5"
    assert_clean_error(diffaug("encode", "-", "-o", out, "--length", 5, stdin=b"@r\nAC\n"),
                       "<stdin>", "FASTQ")
    assert not out.exists()


def test_missing_path_directory_and_unwritable_output(tmp_path):
    out = tmp_path / "out.h5"
    assert_clean_error(diffaug("encode", tmp_path / "nope.fa", "-o", out), "nope.fa",
                       "no such file")
    assert_clean_error(diffaug("encode", tmp_path, "-o", out), "is a directory")
    src = tmp_path / "in.fa"
    src.write_bytes(GOOD)
    assert_clean_error(diffaug("encode", src, "-o", tmp_path / "no" / "out.h5"),
                       "output directory does not exist")
    readonly = tmp_path / "ro"
    readonly.mkdir(mode=0o555)
    if os.access(readonly, os.W_OK):  # root ignores permissions
        readonly = "/proc/sys"
        if os.access(readonly, os.W_OK):
            pytest.skip("no unwritable directory available")
    assert_clean_error(diffaug("encode", src, "-o", f"{readonly}/out.h5"), str(readonly),
                       "not writable")
    assert not out.exists()


@pytest.mark.parametrize("value", ["0", "-1"])
def test_length_must_be_positive(tmp_path, value):
    src = tmp_path / "in.fa"
    src.write_bytes(GOOD)
    assert_clean_error(diffaug("encode", src, "-o", tmp_path / "o.h5", f"--length={value}"),
                       "--length must be a positive integer")
    assert_clean_error(diffaug("encode", src, "-o", tmp_path / "o.h5", "--length", value),
                       "--length")


def test_existing_output_kept_without_force(tmp_path):
    src = tmp_path / "in.fa"
    src.write_bytes(GOOD)
    out = tmp_path / "out.h5"
    out.write_bytes(b"precious")
    assert_clean_error(diffaug("encode", src, "-o", out), "use --force")
    assert out.read_bytes() == b"precious"
    bad = tmp_path / "bad.fa"
    bad.write_bytes(b">a\nAC\n>a\nAC\n")
    assert_clean_error(diffaug("encode", bad, "-o", out, "--force"), "duplicate")
    assert out.read_bytes() == b"precious"  # a failed --force run leaves the old file
    assert diffaug("encode", src, "-o", out, "--force").returncode == 0
    assert h5py.is_hdf5(out)


def test_missing_label(tmp_path):
    src = tmp_path / "in.fa"
    src.write_bytes(GOOD)
    labels = tmp_path / "l.tsv"
    labels.write_text("id\tlabel\na\tx\n")
    assert_clean_error(diffaug("encode", src, "-o", tmp_path / "o.h5", "--labels", labels),
                       str(labels), "record 'b'", "no label")
    assert not (tmp_path / "o.h5").exists()


@pytest.fixture
def genome(tmp_path):
    path = tmp_path / "genome.fa"
    path.write_text(">chr1\n" + "ACGTTGCA" * 5 + "\n")
    return path


def test_bed_via_cli(tmp_path, genome):
    bed = tmp_path / "r.bed"
    bed.write_text("chr1\t0\t8\tfwd\t0\t+\nchr1\t0\t8\trev\t0\t-\n")
    out = tmp_path / "o.h5"
    proc = diffaug("encode", "--bed", bed, "--genome", genome, "-o", out, "--length", 8,
                   "--strand-aware")
    assert proc.returncode == 0, proc.stderr
    with h5py.File(out) as f:
        assert decode(f["onehot"][()]) == ["ACGTTGCA", "TGCAACGT"]
        np.testing.assert_array_equal(f["lengths"][()], [8, 8])


@pytest.mark.parametrize("line, reason", [
    ("chr1\t10\t5\tx", "line 2: end 5 is before start 10"),
    ("chrZ\t1\t5\tx", "unknown chromosome 'chrZ'"),
    ("chr1\t30\t50\tx", "chromosome end"),
])
def test_bad_bed_lines(tmp_path, genome, line, reason):
    bed = tmp_path / "r.bed"
    bed.write_text("chr1\t0\t8\tok\n" + line + "\n")
    out = tmp_path / "o.h5"
    assert_clean_error(diffaug("encode", "--bed", bed, "--genome", genome, "-o", out,
                               "--length", 8), str(bed), reason)
    assert not out.exists()


@pytest.mark.parametrize("args, reason", [
    (["--bed", "r.bed", "-o", "o.h5", "--length", "8"], "--bed needs --genome"),
    (["--bed", "r.bed", "--genome", "g.fa", "-o", "o.h5"], "--bed needs --length"),
    (["in.fa", "-o", "o.h5", "--strand-aware"], "only apply with --bed"),
    (["in.fa", "-o", "o.h5", "--stride", "3"], "--stride only applies to --policy window"),
    (["in.fa", "-o", "o.h5", "--policy", "window"], "--policy window needs --length"),
    (["-o", "o.h5"], "missing input"),
])
def test_option_combinations(tmp_path, args, reason):
    (tmp_path / "in.fa").write_bytes(GOOD)
    assert_clean_error(diffaug("encode", *args, cwd=tmp_path), reason)
