"""pt2 exports: the ``torch.export`` program (``.pt2``) and an AOTInductor package of it.

Both keep the project's custom ops (the fused GLA, ReLU + pool and stem kernels) as calls into
glamor_fast._C, so the process that loads them must ``import glamor_fast`` first (the ONNX
export is the one without model code). The batch dimension is dynamic (1 to MAX_BATCH).

Metadata (``glamor_fast.export.model.metadata``, JSON): the pt2 file's extra file
``glamor_fast`` (``torch.export.load(path, extra_files={"glamor_fast": ""})``); the AOTI
package's metadata (``aoti_load_package(path).get_metadata()``), one key per entry.
"""
from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path

import torch

from .files import publish
from .model import INPUT_NAMES, METADATA_KEY, ExportNet, example_inputs
from .verify import checked_max_abs_diff

MAX_BATCH = 4096
# Messages torch 2.13 prints from inside its own export code, about its own internals (a
# deprecated pytree class it pickles; tensors it saves without storage groups): nothing a user
# of the export can act on.
_TORCH_NOISE = (r".*isinstance\(treespec, LeafSpec\)", r"No complete tensor found in the group")


@contextlib.contextmanager
def torch_export_noise_filtered():
    """Hides _TORCH_NOISE's warnings (only those) inside the block."""
    with warnings.catch_warnings():
        for pattern in _TORCH_NOISE:
            warnings.filterwarnings("ignore", message=pattern)
        yield


def export_program(net: ExportNet) -> torch.export.ExportedProgram:
    """``torch.export.export`` of ``net`` (eval mode, no autograd) with a dynamic batch."""
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with torch.no_grad(), torch_export_noise_filtered():
        return torch.export.export(net, example_inputs(2), dynamic_shapes={name: {0: batch} for name in INPUT_NAMES})


def load_pt2(path) -> tuple[torch.nn.Module, dict[str, str]]:
    """(callable module, metadata) of a ``.pt2`` file written by :func:`save_pt2`."""
    import glamor_fast.models  # noqa: F401  (registers the custom ops the program calls, with their fake kernels)

    extra = {METADATA_KEY: ""}
    with torch_export_noise_filtered():
        program = torch.export.load(str(path), extra_files=extra)
    return program.module(), json.loads(extra[METADATA_KEY] or "{}")


def save_pt2(net: ExportNet, metadata: dict[str, str], out, verify: bool = True) -> dict:
    """Writes ``torch.export.save`` of ``net`` to ``out``; with ``verify``, the file is loaded back
    and compared with ``net`` before it is published. Returns {"max_abs_diff": float or None}."""
    program = export_program(net)
    report = {"max_abs_diff": None}

    def write(tmp: Path) -> None:
        with torch_export_noise_filtered():
            torch.export.save(program, str(tmp), extra_files={METADATA_KEY: json.dumps(metadata)})
        if verify:
            module, _ = load_pt2(tmp)
            report["max_abs_diff"] = checked_max_abs_diff(net, module)

    publish(out, write)
    return report


def save_aoti(net: ExportNet, metadata: dict[str, str], out, verify: bool = True) -> dict:
    """Compiles ``net`` with AOTInductor for this machine's CPU into a package at ``out`` (a
    ``.pt2`` file to load with ``torch._inductor.aoti_load_package``; it needs a C++ compiler at
    export time, not at load time). Returns {"max_abs_diff": float or None}."""
    program = export_program(net)
    report = {"max_abs_diff": None}

    def write(tmp: Path) -> None:
        from torch._inductor.exc import CppCompileError, InvalidCxxCompiler

        try:
            with torch_export_noise_filtered():
                torch._inductor.aoti_compile_and_package(
                    program, package_path=str(tmp), inductor_configs={"aot_inductor.metadata": dict(metadata)})
        except (InvalidCxxCompiler, CppCompileError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ValueError(f"--format aoti needs a working C++ compiler (gcc) here: {first}") from None
        if verify:
            report["max_abs_diff"] = checked_max_abs_diff(net, torch._inductor.aoti_load_package(str(tmp)))

    publish(out, write)
    return report
