"""``diffaug generate`` (placeholder until the command lands)."""
def generate() -> None:
    """Not implemented yet."""
    raise SystemExit("diffaug generate: not implemented yet")
