"""Placeholder: commands for this group are being written; register() adds none yet."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    del subparsers
