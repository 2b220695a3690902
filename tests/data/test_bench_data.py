"""Smoke test: python -m bench.data makes a tree, prepares it and writes the JSON the issue asks for."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_data_runs_end_to_end(tmp_path):
    out = tmp_path / "data.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "bench.data", str(tmp_path / "caer"), "--make", "1",
                           "--seconds", "0.2", "--repeats", "1", "--batch", "4", "--json", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    for key in ("on_the_fly", "cached", "cached_loader_only"):
        assert res[key]["samples_per_s"] > 0, key
    assert res["prepare"]["images"] == 7 and res["machine"]["cpu_model"]
    assert "cached / on the fly" in proc.stdout
    missing = subprocess.run([sys.executable, "-m", "bench.data", str(tmp_path / "nothing")], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode == 1 and "train not found" in missing.stderr
