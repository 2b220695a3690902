"""Every command in COMMANDS answers --help; train's flags map onto TrainConfig."""
from __future__ import annotations

from pathlib import Path

import pytest

from glamor_fast.cli import COMMANDS, MAIN_JOB, build_parser, main


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "usage: glamor-fast " + command in capsys.readouterr().out


def test_top_level_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)
    assert MAIN_JOB in COMMANDS


def test_a_command_imports_only_its_own_module():
    """`glamor-fast demo --help` loads glamor_fast.cli.demo and no other command module."""
    import subprocess
    import sys
    code = ("import sys\nfrom glamor_fast.cli import main\ntry:\n    main(['demo', '--help'])\n"
            "except SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('glamor_fast.cli.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    loaded = eval(out.strip().splitlines()[-1])
    assert [m for m in loaded if m in {module for module, _ in COMMANDS.values()}] == ["glamor_fast.cli.demo"]


def test_train_defaults_are_the_authors_and_flags_reach_the_config():
    from glamor_fast.cli.train import config_from_args
    from glamor_fast.training import TrainConfig

    import dataclasses

    parser = build_parser()
    # --progress defaults to "on a terminal" (tests/cli/test_progress.py); the rest is TrainConfig's
    assert dataclasses.replace(config_from_args(parser.parse_args(["train"])), progress=True) == TrainConfig()
    d = TrainConfig()
    assert (d.optimizer, d.lr, d.momentum, d.milestones, d.gamma, d.epochs) == ("sgd", 5e-4, 0.9, [25, 40], 0.1, 60)
    cfg = config_from_args(parser.parse_args(
        ["train", "--model", "caernet-s", "--optimizer", "adamw", "--scheduler", "cosine", "--amp", "bf16",
         "--accum-steps", "4", "--milestones", "10", "20", "--no-progress", "--backend", "reference",
         "--no-channels-last"]))
    assert (cfg.model, cfg.optimizer, cfg.scheduler, cfg.amp, cfg.accum_steps, cfg.milestones, cfg.progress,
            cfg.backend, cfg.channels_last) == ("caernet-s", "adamw", "cosine", "bf16", 4, [10, 20], False,
                                                "reference", False)
    assert d.channels_last  # measured faster on the CPU (bench/RESULTS-archive.md)


def test_train_cli_reports_errors_cleanly(tmp_path, capsys):
    rc = main(["train", "--data-root", str(tmp_path / "nodata"), "--dataset", "caer-s"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "glamor-fast train: error" in err and "nodata" in err and "train/" in err


def test_quickstart_and_ablation_on_a_tiny_setting(tmp_path, capsys):
    """The main job end to end (tiny data, one epoch), then a two-setting ablation table."""
    import json

    import torch

    common = ["--data-root", str(tmp_path / "data"), "--num-train", "21", "--num-test", "7", "--epochs", "1",
              "--batch-size", "8", "--no-progress", "--backend", "reference"]
    assert main(["quickstart", *common, "--out-dir", str(tmp_path / "qs")]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "chance 0.143" in out
    summary = json.loads((tmp_path / "qs" / "summary.json").read_text())
    for key in ("checkpoint", "confusion_matrix_png"):
        assert Path(summary[key]).is_file()
    assert set(summary["figures"]) == {"attention_maps", "predictions"}
    assert summary["test_images"] == 7 and 0.0 <= summary["test_accuracy"] <= 1.0
    assert (summary["device"], summary["gla_backend"]) == ("cpu" if not torch.cuda.is_available() else "cuda:0",
                                                           "reference")
    assert "GLA backend reference" in out and f"{summary['torch_threads']} threads" in out

    ab = ["ablation", *common, "--out-dir", str(tmp_path / "ab"), "--models", "face", "context-visible-none",
          "--seeds", "0", "1", "--json", str(tmp_path / "ab.json")]
    assert main(ab) == 0
    report = json.loads((tmp_path / "ab.json").read_text())
    records = report["records"]
    assert [(r["preset"], r["seed"]) for r in records] == [("face", 0), ("face", 1), ("context-visible-none", 0),
                                                           ("context-visible-none", 1)]
    assert all({"test_acc", "best_val_acc", "epochs", "train_s"} <= set(r) for r in records)
    import statistics

    table = (tmp_path / "ab" / "ablation.md").read_text()
    for preset, row in (("face", "| (i) face only | w/F |"), ("context-visible-none", "| (iii) context, face visible | w/fC |")):
        accs = [r["test_acc"] for r in records if r["preset"] == preset]
        s = report["summary"][preset]["test_acc"]
        assert (s["mean"], s["std"], s["n"]) == (statistics.mean(accs), statistics.stdev(accs), 2)
        assert f"{row} {100 * s['mean']:.2f} ± {100 * s['std']:.2f}% | 2 |" in table
    # trained from the prepared caches: masked for (i), face visible for (iii)
    assert (tmp_path / "data-cache" / "train").is_dir() and (tmp_path / "data-cache-visible" / "train").is_dir()
    assert json.loads((tmp_path / "ab" / "face" / "seed0" / "result.json").read_text())["config"]["cache"] == \
        str((tmp_path / "data-cache").resolve())
    capsys.readouterr()
    assert main(ab) == 0  # finished runs are reused, not retrained
    assert capsys.readouterr().out.count("reusing") == 4


def test_version(capsys):
    import glamor_fast

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"glamor-fast {glamor_fast.__version__}"
