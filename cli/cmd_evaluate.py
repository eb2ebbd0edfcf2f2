"""``diffaug evaluate`` (placeholder until the command lands)."""
def evaluate() -> None:
    """Not implemented yet."""
    raise SystemExit("diffaug evaluate: not implemented yet")
