"""`glamor-fast bench`: the GLA op benchmark (``bench.gla``) from a source checkout.

The ``bench/`` package lives in the repository, not in the installed wheel, so this command
works only when ``bench`` is importable, i.e. when run from the root of a checkout.
"""
from __future__ import annotations

import argparse
import importlib

from glamor_fast.cli.errors import run_reporting_errors

HOW = "run from the root of a glamor_fast source checkout: python -m bench.gla (or glamor-fast bench there)"


def _bench_gla():
    try:
        return importlib.import_module("bench.gla")
    except ModuleNotFoundError as exc:
        if exc.name not in ("bench", "bench.gla"):
            raise
        return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    module = _bench_gla()
    if module is not None:
        module.add_arguments(parser)
    else:  # keep `glamor-fast --help` working outside a checkout; main() explains
        parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    module = _bench_gla()
    if module is None:
        raise ValueError(f"the `bench` package is not importable here; {HOW}")
    return module.main(args)


def main(args: argparse.Namespace) -> int:
    return run_reporting_errors("bench", run, args)
