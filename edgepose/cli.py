"""``edgepose`` command line: argparse subcommands, one module each in ``edgepose/commands/``.

A command module defines ``register(subparsers)`` which adds its parser and sets ``handler``; a handler
turns arguments into one library call. Errors meant for the user (:class:`EdgeposeError`) become one line
on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from . import __version__, commands
from .errors import EdgeposeError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgepose",
        description="mmpose MobileNetV2 pose models: convert, run, evaluate and benchmark on the edge.",
    )
    parser.add_argument("--version", action="version", version=f"edgepose {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"{commands.__name__}.{mod.name}").register(sub)
    return parser


def setup_logging(quiet: bool = False) -> None:
    """Library code logs (``logging``); the CLI shows INFO progress and warnings on stderr, errors elsewhere."""
    logger = logging.getLogger("edgepose")
    if not any(getattr(h, "_edgepose", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_Formatter())
        handler._edgepose = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.WARNING if quiet else logging.INFO)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        return f"edgepose: warning: {msg}" if record.levelno >= logging.WARNING else msg


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(quiet=bool(getattr(args, "quiet", False)))
    if not getattr(args, "handler", None):
        parser.print_help()
        return 1
    try:
        return int(args.handler(args) or 0)
    except EdgeposeError as e:
        print(f"edgepose: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgepose: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
