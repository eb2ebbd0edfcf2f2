"""Symmetries learned from the data: the 48 alphabet maps, the discovery on real DNA, and their
use (symmetrised spectrum encoder, positives composed with a group element)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from diffaug_genomics.alphabet import one_hot
from diffaug_genomics.alphabet_maps import MAPS, AlphabetMap, by_name, closure
from diffaug_genomics.config_schema import SymmetryConfig
from diffaug_genomics.kmers import kmer_counts
from diffaug_genomics.modalities.dna import DNA_SYMMETRIES
from diffaug_genomics.symmetry import SymmetryCandidates, apply_random_elements, discover

DATA = Path(__file__).resolve().parent / "data"
RC = by_name("reversed, ACGT->TGCA")


def _rows(seqs: list[str]) -> np.ndarray:
    return np.stack([one_hot(s) for s in seqs])


def _splice_rows() -> np.ndarray:
    """600 real 60 bp splice-junction sequences (UCI, one strand: the gene's)."""
    lines = (DATA / "splice_600.fa").read_text().splitlines()
    return _rows(lines[1::2])


# ---------------------------------------------------------------------------- the maps


def test_there_are_48_distinct_maps_the_identity_first_and_names_round_trip():
    assert len(MAPS) == 48 and len(set(MAPS)) == 48
    assert MAPS[0].name == "identity" and MAPS[0] == AlphabetMap((0, 1, 2, 3), False)
    for m in MAPS:
        assert by_name(m.name) == m and m.index == MAPS.index(m)
    assert RC.perm == (3, 2, 1, 0) and RC.reverse
    with pytest.raises(ValueError, match="no alphabet map"):
        by_name("complement")


def test_a_map_acts_alike_on_rows_tensors_and_kmer_spectra(example_rows):
    rows = example_rows[:20]
    x = torch.from_numpy(rows).permute(0, 2, 1).float()
    assert np.array_equal(RC.apply_rows(rows), rows[:, ::-1, ::-1])  # the familiar rule
    for m in MAPS:
        mapped = m.apply_rows(rows)
        assert torch.equal(m.apply(x), torch.from_numpy(mapped).permute(0, 2, 1).float())
        for k in (1, 2, 3):
            want = kmer_counts(mapped, k, normalize=False)
            got = kmer_counts(rows, k, normalize=False)[:, m.kmer_columns(k)]
            np.testing.assert_array_equal(got, want)


def test_composition_is_applying_one_after_the_other_and_closure_makes_groups(example_rows):
    rows = example_rows[:4]
    rng = np.random.default_rng(0)
    for _ in range(30):
        a, b = MAPS[rng.integers(48)], MAPS[rng.integers(48)]
        assert np.array_equal(a.compose(b).apply_rows(rows), a.apply_rows(b.apply_rows(rows)))
    assert closure([RC]) == [MAPS[0], RC]
    assert len(closure([by_name("ACGT->CGTA")])) == 4  # a 4-cycle of the letters
    assert len(closure(list(MAPS))) == 48


# ---------------------------------------------------------------------------- discovery


def test_discovery_accepts_the_reverse_complement_on_real_dhs_and_only_it(example_fasta):
    from conftest import read_example_rows

    report = discover(DNA_SYMMETRIES, read_example_rows(example_fasta), SymmetryConfig(), 0)
    assert report.accepted == [RC.name] and report.group == [0, RC.index]
    assert report.scores[RC.name] <= 1.5 * report.floor
    others = [v for k, v in report.scores.items() if k not in ("identity", RC.name)]
    assert min(others) >= 3 * report.scores[RC.name]
    assert report.rows == 500 and len(report.scores) == 48 and report.scores["identity"] == 0.0
    assert "accepted 'reversed, ACGT->TGCA'" in report.summary()


def test_discovery_rejects_every_map_on_stranded_splice_sites():
    """600 rows: the reverse complement scores near the floor's 1.5 x here (1.9 x on the full
    training split), and is rejected by the gap to the other maps when not by the floor."""
    report = discover(DNA_SYMMETRIES, _splice_rows(), SymmetryConfig(), 0)
    assert report.accepted == [] and report.group == [0]
    assert "nothing accepted" in report.reason or "above 1.5 x the floor" in report.reason
    closest = min((v, k) for k, v in report.scores.items() if k != "identity")
    assert closest[1] == RC.name  # the nearest to a symmetry, but not one


def test_a_symmetry_made_by_adding_mapped_copies_is_found_whatever_the_map():
    """Sequences of a Markov chain with no symmetry (a random transition matrix: not
    reversible, no letter permutation leaves it unchanged), plus their images under an
    arbitrary map g of order 2: discovery finds g (and nothing about DNA is assumed)."""
    rng = np.random.default_rng(1)
    trans = rng.dirichlet(np.full(4, 0.7), size=4)
    seqs = []
    for _ in range(300):
        state, seq = rng.integers(4), []
        for _ in range(100):
            state = rng.choice(4, p=trans[state])
            seq.append("ACGT"[state])
        seqs.append("".join(seq))
    base = _rows(seqs)
    g = by_name("reversed, ACGT->CATG")  # A<->C, G<->T, reversed: an involution
    assert g.compose(g) == MAPS[0]
    report = discover(DNA_SYMMETRIES, np.concatenate([base, g.apply_rows(base)]),
                      SymmetryConfig(), 0)
    assert report.accepted == [g.name]
    plain = discover(DNA_SYMMETRIES, base, SymmetryConfig(), 0)
    assert plain.accepted == []


def test_discovery_can_be_turned_off_and_needs_rows_and_a_modality_that_offers_maps(
        example_rows):
    off = discover(DNA_SYMMETRIES, example_rows, SymmetryConfig(mode="none"), 0)
    assert off.accepted == [] and off.scores == {} and "turned off" in off.reason
    few = discover(DNA_SYMMETRIES, example_rows[:5], SymmetryConfig(), 0)
    assert few.accepted == [] and "too few rows" in few.reason
    assert discover(None, example_rows, SymmetryConfig(), 0).group == [0]


def test_candidates_whose_compositions_are_not_accepted_are_all_rejected():
    """Two candidates within the floor whose composition is not: not a group, none kept."""
    names = ("id", "a", "b", "ab")
    stat = np.array([[1.0, 2.0, 3.0, 4.0]])
    cands = SymmetryCandidates(
        names=names, statistic=lambda rows, cfg: np.repeat(stat, len(rows), 0) + rows,
        transform_statistic=lambda p, i, cfg: p if i < 3 else p[::-1],
        apply=lambda x, i: x, apply_rows=lambda r, i: r,
        compose=lambda i, j: {(1, 2): 3, (2, 1): 3}.get((i, j), max(i, j) if 0 in (i, j)
                                                        else 0))
    rows = np.random.default_rng(0).random((64, 4))
    report = discover(cands, rows, SymmetryConfig(gap_ratio=1.0), 0)
    assert report.accepted == [] and "do not form a group" in report.reason


def test_random_elements_draw_nothing_for_a_trivial_group_and_map_rows_otherwise(example_rows):
    x = torch.from_numpy(example_rows[:64]).permute(0, 2, 1).float()
    gen = torch.Generator().manual_seed(0)
    before = gen.get_state()
    assert apply_random_elements(DNA_SYMMETRIES, [0], x, gen) is x
    assert torch.equal(gen.get_state(), before)  # no draw: runs without a symmetry unchanged
    out = apply_random_elements(DNA_SYMMETRIES, [0, RC.index], x, gen)
    same = (out == x).flatten(1).all(dim=1)
    mapped = (out == RC.apply(x)).flatten(1).all(dim=1)
    assert bool((same | mapped).all()) and 10 < int(mapped.sum()) < 54


# ---------------------------------------------------------------------------- use


def test_a_symmetrised_spectrum_encoder_is_invariant_trained_or_not(example_rows):
    from diffaug_genomics.models.spectrum import SpectrumEncoder

    x = torch.from_numpy(example_rows).permute(0, 2, 1).float()
    enc = SpectrumEncoder(length=200, kmer_k=3, width=16, n_blocks=1, embed_dim=8)
    enc.set_symmetry([0, RC.index])
    enc.fit_init(x)
    torch.nn.init.normal_(enc.mlp[-1].weight)  # as if trained: the MLP reads the features too
    with torch.no_grad():
        assert torch.allclose(enc(x), enc(RC.apply(x)), atol=1e-5)
        other = by_name("ACGT->TCGA")
        assert not torch.allclose(enc(x), enc(other.apply(x)), atol=1e-3)
    state = enc.state_dict()
    assert state["symmetry"].nonzero().flatten().tolist() == [0, RC.index]
    del state["symmetry"]  # an encoder saved before the group existed: the identity alone
    old = SpectrumEncoder(length=200, kmer_k=3, width=16, n_blocks=1, embed_dim=8)
    old.load_state_dict(state)
    assert old.group == [0]
    with pytest.raises(ValueError, match="identity"):
        old.set_symmetry([RC.index])


def test_the_start_gives_the_profile_directions_only_where_there_is_a_position_frame():
    """Real DHS (composition) and real splice sites (a junction at a fixed position)."""
    from conftest import EXAMPLES, read_example_rows

    from diffaug_genomics.models.spectrum import SpectrumEncoder

    for rows, frame in ((read_example_rows(EXAMPLES / "dhs_example.fa"), False),
                        (_splice_rows(), True)):
        x = torch.from_numpy(rows).permute(0, 2, 1).float()
        enc = SpectrumEncoder(length=x.shape[2], kmer_k=3, width=16, n_blocks=1, embed_dim=16)
        enc.fit_init(x)
        dims = enc.start_record["profile_dims"]
        assert (dims > 0) == frame, enc.start_record
        n_kmer = 64
        weight = enc.proj.weight
        assert weight[:16 - dims, n_kmer:].abs().sum() == 0  # spectrum rows read no profile
        assert weight[16 - dims:, :n_kmer].abs().sum() == 0  # profile rows read no spectrum
        if not frame:  # records of many lengths, centred and padded: still no frame
            rng = np.random.default_rng(0)
            padded = x.clone()
            for row in padded:
                keep = int(rng.integers(60, 200))
                row[:, :(200 - keep) // 2] = 0
                row[:, (200 - keep) // 2 + keep:] = 0
            again = SpectrumEncoder(length=200, kmer_k=3, width=16, n_blocks=1, embed_dim=16)
            again.fit_init(padded)
            assert again.start_record["profile_dims"] == 0, again.start_record
        fixed = SpectrumEncoder(length=x.shape[2], kmer_k=3, width=16, n_blocks=1,
                                embed_dim=16, position_dims=5)
        fixed.fit_init(x)
        assert fixed.start_record["profile_dims"] == 5
