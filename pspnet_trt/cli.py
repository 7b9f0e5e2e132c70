"""The ``pspnet-trt`` command: a thin layer over the Python API.

Each stage registers its subcommand from a small ``command.py`` beside its code; those modules
import only argparse at import time, so ``pspnet-trt --help`` works on the base install.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import List, NoReturn, Optional

from .errors import UserError
from .version import __version__

# Modules with ``add_parser(subparsers)``; order = order in --help.
COMMAND_MODULES = (
    "pspnet_trt.commands",
    "pspnet_trt.train.command",
    "pspnet_trt.export.command",
    "pspnet_trt.quant.command",
    "pspnet_trt.trt.command",
    "pspnet_trt.engine",
    "pspnet_trt.validate.command",
    "pspnet_trt.debug.command",
    "pspnet_trt.runtime.command",
    "pspnet_trt.serving.command",
    "pspnet_trt.serving.deepstream",
    "pspnet_trt.demo",
)


class Parser(argparse.ArgumentParser):
    """A bad command line is one line on stderr (the problem and where to look), exit 2, like a UserError."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="pspnet-trt", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"pspnet-trt {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (UserError, OSError) as e:
        print(f"pspnet-trt {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pspnet-trt {args.command}: interrupted (no partial artifact was left behind)", file=sys.stderr)
        return 130
