"""The `electives` command: one sub-module per group of sub-commands, each with `register(subparsers)`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

# Before torch loads: OpenMP threads that spin while waiting make 2 threads ~6x slower than 1 on a shared machine
# (measured: a contended ML-1M epoch 505 s spinning, 77 s passive). Set it explicitly to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from electives import __version__
from electives.errors import ElectivesError

# Each module exposes register(subparsers); the command's handler is stored as `func` on its parser.
_COMMAND_MODULES = (
    "electives.cli.data",
    "electives.cli.model",
    "electives.cli.monitor",
    "electives.cli.evaluate",
    "electives.cli.recommend",
    "electives.cli.score",
    "electives.cli.plan",
    "electives.cli.at_risk",
    "electives.cli.web",
    "electives.cli.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="electives",
        description="Recommend the elective courses in which each student is predicted to do best.",
    )
    parser.add_argument("--version", action="version", version=f"electives {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    import importlib

    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ElectivesError as exc:
        print(f"electives {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
