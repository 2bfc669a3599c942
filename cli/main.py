"""``oms``: the operator's command line.

Each command group lives in its own module under ``cli`` and exposes
``register(subparsers)``, which adds its sub-commands with ``set_defaults(run=...)``.
``run(args)`` returns the process's exit code. Settings (``OMS_DATABASE_URL`` and the
rest) are read exactly as ``start_oms`` reads them.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from cli.common import CommandFailed

# Command groups, in the order ``oms --help`` lists them.
GROUPS: tuple[str, ...] = ("serve", "keys", "views", "control")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="oms", description="Operate the OMS: its service, its API keys, its state.")
    commands = top.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    for name in GROUPS:
        importlib.import_module(f"cli.{name}").register(commands)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.run(args))
    except CommandFailed as failure:
        print(f"oms {args.command}: {failure}", file=sys.stderr)
        return failure.code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
