"""The ``incident-policy`` command line."""

from __future__ import annotations

import click


@click.group()
def main() -> None:
    """Rules-engine driven incident policy service."""
