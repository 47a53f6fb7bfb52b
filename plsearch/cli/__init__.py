"""The `plsearch` command line: one module per pipeline stage, one function per subcommand.

Each module in COMMAND_MODULES defines `register(subparsers)`, which adds its subcommands
with `set_defaults(func=...)`; a command function takes the parsed args and returns the
exit code. The CLI is the only part of plsearch that prints. Every PlsearchError
becomes one line on stderr and exit code 2, with no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from plsearch import __version__
from plsearch.errors import PlsearchError

# Subcommand modules, in the order they appear in --help.
COMMAND_MODULES = [
    "plsearch.cli.info",
    "plsearch.cli.parent",
    "plsearch.cli.latency",
    "plsearch.cli.prune",
    "plsearch.cli.recover",
    "plsearch.cli.search",
    "plsearch.cli.report",
]


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        from plsearch.cli.common import HelpFormatter

        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):  # argparse's own errors: one line, exit 2
        self.exit(2, f"plsearch: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="plsearch", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"plsearch {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


# Commands whose output the progress bars of lm-eval and transformers (dozens per trial)
# would bury; -v brings them back.
QUIET_COMMANDS = ("search",)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    _quiet_progress_bars(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except PlsearchError as exc:
        print(f"plsearch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("plsearch: interrupted", file=sys.stderr)
        return 130


def _quiet_progress_bars(argv: list[str]) -> None:
    """TQDM_DISABLE for QUIET_COMMANDS: tqdm reads it once, when it is imported, and
    build_parser's command modules import torch, which imports tqdm; so it is set here."""
    words = [a for a in argv if not a.startswith("-")]
    if words[:1] and words[0] in QUIET_COMMANDS and not {"-v", "--verbose"} & set(argv):
        os.environ.setdefault("TQDM_DISABLE", "1")


if __name__ == "__main__":
    sys.exit(main())
