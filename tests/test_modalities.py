"""The modality interface: every modality has an input/output (``io``, required: a plugin of
sequences sets ``SEQUENCE_IO``), and the interface is below its implementations."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from diffaug_genomics.modalities.arrays import SampleIO
from diffaug_genomics.modalities.base import Modality
from diffaug_genomics.modalities.interface import Chunk, ModalityIO
from diffaug_genomics.modalities.registry import get_modality
from diffaug_genomics.modalities.sequences import SEQUENCE_IO, SequenceIO, iter_chunks


@pytest.mark.parametrize("name, kind", [("dna", SequenceIO), ("image", SampleIO),
                                        ("tabular", SampleIO)])
def test_every_builtin_modality_has_an_io(name, kind):
    io = get_modality(name).io
    assert isinstance(io, ModalityIO) and isinstance(io, kind)
    assert io.shardable == (kind is SequenceIO)


def test_a_modality_says_how_it_reads_its_input():
    """``io`` is required: a plugin of sequences names the sequence IO, one without any is a
    TypeError where it is built (no silent fallback), and the former import path is gone."""
    dna = get_modality("dna")
    plugin = dataclasses.replace(dna, name="my-dna", encoder_backbones=("conv1d",))
    assert plugin.io is SEQUENCE_IO
    parts = (dna.to_model, dna.build_encoder, dna.build_denoiser, dna.build_handcrafted,
             dna.knn_features, dna.to_diffusion, dna.from_diffusion)
    assert Modality("seq", *parts, SEQUENCE_IO).io is SEQUENCE_IO
    with pytest.raises(TypeError, match="io"):
        Modality("bare", *parts)
    with pytest.raises(ImportError):
        import diffaug_genomics.models.registry  # noqa: F401


def test_chunk_slice_keeps_rows_ids_labels_and_lengths():
    chunk = Chunk(np.arange(12).reshape(4, 3), list("abcd"), ["x", "y", "x", "y"],
                  np.array([3, 2, 3, 1]), "center")
    part = chunk.slice(1, 3)
    assert part.rows.tolist() == [[3, 4, 5], [6, 7, 8]] and part.ids == ["b", "c"]
    assert part.labels == ["y", "x"] and part.lengths.tolist() == [2, 3]
    assert part.policy == "center" and part.onehot is part.rows
    assert Chunk(np.zeros((2, 1)), ["a", "b"], None).slice(0, 1).labels is None


def test_sequence_chunks_of_fasta_are_encoded_rows(tmp_path):
    fasta = tmp_path / "a.fa"
    fasta.write_text(">r1\nACGT\n>r2\nAC\n")
    (chunk,) = iter_chunks(fasta, length=4, policy="center")
    assert chunk.ids == ["r1", "r2"] and chunk.labels is None
    assert chunk.rows.shape == (2, 4, 4) and chunk.lengths.tolist() == [4, 2]
    x = get_modality("dna").to_model(chunk.rows)
    assert x.shape == (2, 4, 4) and x.dtype == torch.float32
