"""Former home of the sequence inputs, kept as a re-export for callers not yet moved: reading
in chunks is :mod:`diffaug_genomics.modalities.sequences`, whole one-hot files
:func:`diffaug_genomics.io.h5.load_rows`."""

from diffaug_genomics.io.h5 import load_rows, read_strings_slice
from diffaug_genomics.modalities.interface import Chunk
from diffaug_genomics.modalities.sequences import READ_ROWS, iter_chunks

__all__ = ["READ_ROWS", "Chunk", "iter_chunks", "load_rows", "read_strings_slice"]
