"""``diffaug embed`` (placeholder until the command lands)."""
def embed() -> None:
    """Not implemented yet."""
    raise SystemExit("diffaug embed: not implemented yet")
