"""The ``diffaug`` command line: thin Typer wiring over :mod:`diffaug_genomics`.

Installed as ``diffaug_genomics_cli`` (never as a top-level ``cli`` package). Commands import
the library, and torch, inside their bodies so that ``--help`` stays instant.
"""
