"""Flags shared by the subcommands, so each thing has one name and one meaning.

    run folder of a search     --run DIR         (search, export, report)
    latency table              --latency-db CSV  (search, profile-npu, latency fit/predict)
    model placement            --device, --dtype, --trust-remote-code (commands that load one)
    machine-readable result    --json

Old spellings stay as hidden aliases that still work and print one deprecation line.
Nothing here imports torch: `plsearch --help` builds every parser.
"""

from __future__ import annotations

import argparse
import sys

DEVICES = ("auto", "cpu", "cuda", "npu")
DTYPES = ("float32", "bfloat16", "float16")


class HelpFormatter(argparse.HelpFormatter):
    """Appends "(default: X)" to a flag's help unless the text already gives its default."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.default not in (None, False, argparse.SUPPRESS) and "default" not in text
                and action.option_strings and action.nargs != 0):
            text += " (default: %(default)s)"
        return text


def deprecated_alias(parser, old: str, new: str, dest: str, **kwargs) -> None:
    """``old`` keeps working as a hidden spelling of ``new`` and says so on stderr."""

    class _Deprecated(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            print(f"plsearch: warning: {old} is deprecated; use {new}", file=sys.stderr)
            setattr(namespace, self.dest, values)

    parser.add_argument(old, dest=dest, action=_Deprecated, help=argparse.SUPPRESS,
                        default=argparse.SUPPRESS, **kwargs)


def add_model_args(parser, *, device: bool = True) -> None:
    """--device, --dtype and --trust-remote-code for a command that loads a model."""
    if device:
        parser.add_argument("--device", default="auto", choices=DEVICES,
                            help="where the model runs; auto picks npu, then cuda, then cpu")
    parser.add_argument("--dtype", default="float32", choices=DTYPES,
                        help="weights' dtype once loaded")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="allow a model folder's own Python code (off: plsearch runs "
                        "only transformers' built-in classes)")


def add_json_arg(parser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print the result as one JSON object on stdout")


def torch_dtype(name: str):
    """The torch dtype of a --dtype value."""
    import torch

    return getattr(torch, name)


def torch_device(name: str):
    """The torch device of a --device value (auto: npu, then cuda, then cpu); DeviceError
    when that backend is not usable here. One home: plsearch.latency.timers.torch_device
    (imported here, not at the top, so building the parser does not import torch)."""
    from plsearch.latency.timers import torch_device as choose

    return choose(name)
