"""`feedbot` commands of the admin feature."""

from __future__ import annotations

import argparse
from typing import Any


def register(commands: Any) -> None:
    """Add this feature's subcommands to the `feedbot` parser."""
    _ = commands, argparse
