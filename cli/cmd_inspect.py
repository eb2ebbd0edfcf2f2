"""``diffaug inspect`` (placeholder)."""
def inspect() -> None:
    """Summarise a diffaug HDF5 file."""
