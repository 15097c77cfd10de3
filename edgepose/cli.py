"""``edgepose`` command line: argparse subcommands, one module each in ``edgepose/commands/``.

A command module defines ``register(subparsers)`` which adds its parser and sets ``handler``; a handler
turns arguments into one library call. Errors meant for the user (:class:`EdgeposeError`) become one line
on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys

from . import __version__, commands
from .errors import EdgeposeError, terminate_as_interrupt
from .plugins import import_submodules


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error: ``edgepose eval: error: argument --threads: ...`` (no usage block)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="edgepose",
        description="mmpose MobileNetV2 pose models: convert, run, evaluate and benchmark on the edge.",
    )
    parser.add_argument("--version", action="version", version=f"edgepose {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in import_submodules(commands.__name__, commands.__path__):  # _args: shared helpers, not commands
        mod.register(sub)
    return parser


def setup_logging(quiet: bool = False) -> None:
    """Library code logs (``logging``); the CLI shows INFO progress and warnings on stderr, errors elsewhere."""
    logger = logging.getLogger("edgepose")
    if not any(getattr(h, "_edgepose", False) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(_Formatter())
        handler._edgepose = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.WARNING if quiet else logging.INFO)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record (not the one at set-up), so that a
    redirected or replaced stderr (tests, embedding) gets the messages and a closed one never does."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


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
        with terminate_as_interrupt():  # SIGTERM cleans up (temporary files, folders) like Ctrl-C
            return int(args.handler(args) or 0)
    except EdgeposeError as e:
        print(f"edgepose: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", 2)
        print("edgepose: interrupted" if signum == 2 else f"edgepose: terminated (signal {signum})", file=sys.stderr)
        return 128 + signum


if __name__ == "__main__":
    sys.exit(main())
