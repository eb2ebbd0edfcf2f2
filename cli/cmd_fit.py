"""``diffaug fit`` (placeholder until the command lands)."""
def fit() -> None:
    """Not implemented yet."""
    raise SystemExit("diffaug fit: not implemented yet")
