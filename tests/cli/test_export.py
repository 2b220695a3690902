"""glamor-fast export: written only when complete and verified; every expected failure is one line."""
from __future__ import annotations

import importlib.util

import pytest

from glamor_fast.cli import main as cli_main
from tests.tiny_training import tiny_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("export_cli"))


def _one_line_error(capsys, *words):
    err = capsys.readouterr().err.strip()
    assert err.startswith("glamor-fast export: error: ") and "\n" not in err, err
    for word in words:
        assert word in err, err
    return err


def test_pt2_export_is_verified_and_replaces_only_with_overwrite(ckpt, tmp_path, capsys):
    out = tmp_path / "net.pt2"
    assert cli_main(["export", str(ckpt), str(out)]) == 0  # format from the suffix
    line = capsys.readouterr().out
    assert f"wrote {out} (pt2" in line and "max |exported - PyTorch|" in line
    before = out.read_bytes()
    assert cli_main(["export", str(ckpt), str(out), "--format", "pt2"]) == 1
    _one_line_error(capsys, str(out), "--overwrite")
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.pt2"]


def test_a_failure_while_writing_leaves_the_old_file_and_no_temporary(ckpt, tmp_path, capsys, monkeypatch):
    out = tmp_path / "net.pt2"
    out.write_bytes(b"the user's previous export")

    def disagree(net, run):
        raise ValueError("the exported file's outputs differ from PyTorch's")

    monkeypatch.setattr("glamor_fast.export.pt2.checked_max_abs_diff", disagree)
    assert cli_main(["export", str(ckpt), str(out), "--overwrite"]) == 1
    _one_line_error(capsys, "differ from PyTorch")
    assert out.read_bytes() == b"the user's previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.pt2"]


@pytest.mark.parametrize("args, words", [
    (["OUT.tflite"], ["give --format", "onnx, pt2, aoti"]),
    (["OUT.onnx", "--format", "tflite"], ["--format tflite: unknown format"]),
    (["blocker/OUT.pt2"], ["blocker", "output folder is not a folder"]),
    (["folder", "--format", "pt2"], ["folder", "is a folder"]),
])
def test_bad_format_and_unwritable_out_are_refused_before_loading(ckpt, tmp_path, capsys, monkeypatch, args, words):
    (tmp_path / "blocker").write_text("a file where a folder should be")
    (tmp_path / "folder").mkdir()
    monkeypatch.setattr("glamor_fast.export.load_for_export", lambda *a: pytest.fail("loaded the checkpoint"))
    out, *rest = args
    assert cli_main(["export", str(ckpt), str(tmp_path / out), *rest]) == 1
    _one_line_error(capsys, *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "folder"]


def test_bad_checkpoint(tmp_path, capsys):
    fake = tmp_path / "fake.pt"
    fake.write_text("not a checkpoint")
    assert cli_main(["export", str(fake), str(tmp_path / "net.pt2")]) == 1
    _one_line_error(capsys, "fake.pt", "not a checkpoint")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake.pt"]


def test_missing_onnx_extra_names_it(ckpt, tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    assert cli_main(["export", str(ckpt), str(tmp_path / "net.onnx")]) == 1
    _one_line_error(capsys, "onnxscript not installed", 'pip install "glamor_fast[onnx]"')
    assert list(tmp_path.iterdir()) == []


def test_aoti_without_a_compiler_is_one_line(ckpt, tmp_path, capsys, monkeypatch):
    from torch._inductor.exc import InvalidCxxCompiler

    def no_compiler(*args, **kwargs):
        raise InvalidCxxCompiler()

    monkeypatch.setattr("torch._inductor.aoti_compile_and_package", no_compiler)
    assert cli_main(["export", str(ckpt), str(tmp_path / "net.pt2"), "--format", "aoti"]) == 1
    _one_line_error(capsys, "--format aoti needs a working C++ compiler")
    assert list(tmp_path.iterdir()) == []
