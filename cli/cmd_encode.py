"""``diffaug encode`` (placeholder until the encode command lands)."""
def encode() -> None:
    """Encode FASTA or BED regions to one-hot HDF5."""
