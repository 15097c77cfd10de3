"""Subcommands of the ``edgepose`` CLI; every module here with a ``register(subparsers)`` is one command."""
