"""``glamor-fast export CKPT OUT --format onnx|pt2|aoti``: the command line of ``glamor_fast.export``.

Everything is checked before the model is loaded or anything written: the format, the optional
ONNX extra, OUT (not a folder, not an existing file unless --overwrite, its folder writable).
The file is written under a temporary name, verified against PyTorch (unless --no-verify) and
renamed to OUT only when complete.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from glamor_fast.cli.errors import check_writable_dir, run_reporting_errors

SUFFIX_FORMATS = {".onnx": "onnx", ".pt2": "pt2"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="training checkpoint (.pt) to export")
    parser.add_argument("out", help="file to write (e.g. glamor-net.onnx, glamor-net.pt2)")
    parser.add_argument("--format", dest="fmt", metavar="FORMAT",
                        help="onnx (plain ONNX, runs in onnxruntime alone; extra [onnx]), pt2 (torch.export "
                             "program) or aoti (AOTInductor package for this CPU, a .pt2); default: from OUT's "
                             "suffix (.onnx -> onnx, .pt2 -> pt2)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip running the written file against PyTorch on random inputs (batch 1 and 5)")


def _format(args: argparse.Namespace) -> str:
    from glamor_fast.export import FORMATS

    fmt = args.fmt or SUFFIX_FORMATS.get(Path(args.out).suffix.lower())
    if fmt is None:
        raise ValueError(f"OUT {args.out}: give --format ({', '.join(FORMATS)}); the suffix does not say which")
    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt}: unknown format; choose one of {', '.join(FORMATS)}")
    return fmt


def _check_out(out: Path, overwrite: bool) -> None:
    if out.is_dir():
        raise IsADirectoryError(21, "is a folder; give OUT a file name", str(out))
    if out.exists() and not overwrite:
        raise FileExistsError(17, "exists; pass --overwrite to replace it", str(out))
    check_writable_dir(out.parent, "the output folder")


def run(args: argparse.Namespace) -> int:
    from glamor_fast.export import load_for_export, save

    fmt = _format(args)
    if fmt == "onnx":
        from glamor_fast.export.onnx import require_onnx_extra

        require_onnx_extra()
    out = Path(args.out)
    _check_out(out, args.overwrite)
    net, metadata = load_for_export(args.checkpoint)
    report = save(net, metadata, out, fmt, verify=args.verify)
    outputs = "logits" + (", attn" if net.has_attention else "")
    line = f"wrote {out} ({fmt}, {out.stat().st_size / 1e6:.1f} MB): inputs face, context; outputs {outputs}"
    if report["max_abs_diff"] is not None:
        line += f"; max |exported - PyTorch| {report['max_abs_diff']:.1e} at batch 1 and 5"
    print(line)
    return 0


def main(args: argparse.Namespace) -> int:
    return run_reporting_errors("export", run, args)
