"""encode_bed: regions from a small genome written here, strands, bounds and bad BED lines."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

from diffaug_genomics.encode import encode_bed
from diffaug_genomics.errors import InputError
from diffaug_genomics.io.h5 import read_strings

CHANNEL = {"A": 0, "C": 1, "G": 2, "T": 3}
COMPLEMENT = {"A": "T", "C": "G", "G": "C", "T": "A", "N": "N"}
rng = np.random.default_rng(7)
CHR1 = "".join(rng.choice(list("ACGT"), 100)).lower()[:30] + \
    "".join(rng.choice(list("ACGTN"), 70))
CHR2 = "".join(rng.choice(list("ACGT"), 30))
L = 16


def ref_center(seq: str) -> np.ndarray:
    """Centre crop/pad then per-character one-hot."""
    n = len(seq)
    if n >= L:
        seq, offset = seq[(n - L) // 2:][:L], 0
    else:
        offset = (L - n) // 2
    row = np.zeros((L, 4), dtype=np.uint8)
    for i, ch in enumerate(seq):
        if ch.upper() in CHANNEL:
            row[offset + i, CHANNEL[ch.upper()]] = 1
    return row


def revcomp(seq: str) -> str:
    return "".join(COMPLEMENT[c] for c in reversed(seq.upper()))


@pytest.fixture
def genome(tmp_path):
    path = tmp_path / "genome.fa"
    with open(path, "w") as fh:
        for name, seq in (("chr1", CHR1), ("chr2", CHR2)):
            fh.write(f">{name} test\n" + "\n".join(seq[i:i + 20] for i in range(0, len(seq), 20))
                     + "\n")
    return path


def write_bed(tmp_path, text: str):
    path = tmp_path / "regions.bed"
    path.write_text(text)
    return path


BED = ("track name=test\n# comment\n"
       "chr1\t10\t30\tr1\t0\t+\n"
       "chr1\t40\t52\tr2\t0\t-\n"
       "chr2\t0\t30\n")


def encoded(path):
    with h5py.File(path) as f:
        return f["onehot"][()], read_strings(f["ids"]), f["lengths"][()], dict(f.attrs)


@pytest.mark.parametrize("strand_aware", [False, True])
def test_regions_match_reference(tmp_path, genome, strand_aware):
    out = tmp_path / "out.h5"
    summary = encode_bed(write_bed(tmp_path, BED), genome, out, length=L,
                         strand_aware=strand_aware, show_progress=False)
    onehot, ids, lengths, attrs = encoded(out)
    r2 = CHR1[40:52]
    expected = [ref_center(CHR1[10:30]), ref_center(revcomp(r2) if strand_aware else r2),
                ref_center(CHR2)]
    np.testing.assert_array_equal(onehot, np.stack(expected))
    assert ids == ["r1", "r2", "chr2:0-30"]
    assert lengths.tolist() == [16, 12, 16]
    assert attrs["policy"] == "center" and attrs["strand_aware"] == strand_aware
    assert attrs["genome"] == "genome.fa" and attrs["reverse_complemented"] == int(strand_aware)
    assert summary.records == 3 and summary.padded == 1 and summary.cropped == 2
    assert (tmp_path / "genome.fa.fai").exists()  # built on first use


def test_off_end_is_an_error_or_padded(tmp_path, genome):
    bed = write_bed(tmp_path, "chr1\t0\t10\tok\nchr2\t20\t40\tedge\t0\t+\n")
    out = tmp_path / "out.h5"
    with pytest.raises(InputError) as info:
        encode_bed(bed, genome, out, length=L, show_progress=False)
    assert info.value.line == 2 and "chromosome end" in info.value.reason
    assert "--pad-out-of-bounds" in info.value.reason and not out.exists()
    encode_bed(bed, genome, out, length=L, pad_out_of_bounds=True, show_progress=False)
    onehot, _, lengths, attrs = encoded(out)
    np.testing.assert_array_equal(onehot[1], ref_center(CHR2[20:30] + "N" * 10))
    assert lengths[1] == 16 and attrs["out_of_bounds"] == 1


@pytest.mark.parametrize("line, reason", [
    ("chrX\t1\t5\tx", "unknown chromosome 'chrX'"),
    ("chr1\t20\t10\tx", "end 10 is before start 20"),
    ("chr1\t5\t5\tx", "empty region"),
    ("chr1\tfive\t10", "integers"),
    ("chr1\t5", "at least 3 columns"),
    ("chr1\t1\t5\tr1", "duplicate region name 'r1'"),
    ("chr1\t1\t5\tx\t0\t*", "strand"),
])
def test_bad_bed_lines_name_the_line(tmp_path, genome, line, reason):
    bed = write_bed(tmp_path, "# header\nchr1\t0\t10\tr1\n" + line + "\n")
    out = tmp_path / "out.h5"
    with pytest.raises(InputError) as info:
        encode_bed(bed, genome, out, length=L, show_progress=False)
    assert reason in info.value.reason and info.value.line == 3
    assert info.value.path == str(bed) and not out.exists()


def test_labels_follow_region_names(tmp_path, genome):
    labels = tmp_path / "labels.tsv"
    labels.write_text("id\tlabel\nr1\tpos\nr2\tneg\nchr2:0-30\tpos\n")
    out = tmp_path / "out.h5"
    encode_bed(write_bed(tmp_path, BED), genome, out, length=L, labels=labels,
               show_progress=False)
    with h5py.File(out) as f:
        assert read_strings(f["labels"]) == ["pos", "neg", "pos"]


def test_genome_problems(tmp_path, genome):
    bed = write_bed(tmp_path, BED)
    with pytest.raises(InputError, match="no such file"):
        encode_bed(bed, tmp_path / "missing.fa", tmp_path / "o.h5", length=L)
    bad = tmp_path / "ragged.fa"
    bad.write_text(">chr1\nACGTACGT\nAC\nACGTACGT\n")  # line lengths pyfaidx cannot index
    with pytest.raises(InputError, match="cannot index the genome"):
        encode_bed(bed, bad, tmp_path / "o.h5", length=L, show_progress=False)
    assert not (tmp_path / "o.h5").exists()


def test_unwritable_genome_directory_without_index(tmp_path, genome, monkeypatch):
    import diffaug_genomics.io.bed as bed_module

    gdir = tmp_path / "ro"
    gdir.mkdir()
    genome = genome.rename(gdir / "genome.fa")
    real_access = os.access  # chmod does not stop root, so deny write access explicitly
    monkeypatch.setattr(bed_module.os, "access", lambda p, mode: False if (
        str(p) == str(gdir) and mode & os.W_OK) else real_access(p, mode))
    with pytest.raises(InputError, match="directory is not writable") as info:
        encode_bed(write_bed(tmp_path, BED), genome, tmp_path / "o.h5", length=L)
    assert info.value.path == str(genome) and not (tmp_path / "o.h5").exists()


def test_byte_complement_agrees_with_onehot_reverse_complement():
    from diffaug_genomics.alphabet import one_hot, reverse_complement
    from diffaug_genomics.io.bed import COMPLEMENT

    seq = b"ACGTUacgtuNRYKMnn"
    np.testing.assert_array_equal(one_hot(seq[::-1].translate(COMPLEMENT)),
                                  reverse_complement(one_hot(seq)))
