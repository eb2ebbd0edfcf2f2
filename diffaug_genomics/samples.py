"""Former home of the image / tabular input handling, kept as a re-export for callers not yet
moved: the samples and read options are :mod:`diffaug_genomics.io.samples`, detection
:mod:`diffaug_genomics.modalities.detect`, the preprocessing
:mod:`diffaug_genomics.modalities.arrays`, :func:`choose_modality`
:mod:`diffaug_genomics.modalities.registry`."""

from diffaug_genomics.io.samples import (
    FASTA_SUFFIXES,
    IMAGE_SUFFIXES,
    TABLE_SUFFIXES,
    ReadOptions,
    Samples,
    list_images,
    load_npy,
    npy_kind,
    open_text,
)
from diffaug_genomics.modalities.arrays import (
    PREPROCESS_FILE,
    PREPROCESS_FORMAT,
    SampleIO,
    load_preprocess,
    prepare_rows,
    read_run_input,
    read_samples,
    save_preprocess,
    transform_samples,
)
from diffaug_genomics.modalities.detect import detect_modality
from diffaug_genomics.modalities.registry import choose_modality

__all__ = ["FASTA_SUFFIXES", "IMAGE_SUFFIXES", "PREPROCESS_FILE", "PREPROCESS_FORMAT",
           "TABLE_SUFFIXES", "ReadOptions", "SampleIO", "Samples", "choose_modality",
           "detect_modality", "list_images", "load_npy", "load_preprocess", "npy_kind",
           "open_text", "prepare_rows", "read_run_input", "read_samples", "save_preprocess",
           "transform_samples"]
