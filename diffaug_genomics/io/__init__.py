"""Readers and writers: FASTA, BED, label tables, the project's HDF5 schemas, atomic outputs."""
