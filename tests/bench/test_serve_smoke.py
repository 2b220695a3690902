"""bench.serve run as a user runs it, briefly: both batching settings, the memory run, its JSON."""
import json

import pytest

from tests.helpers import run_bench

pytest.importorskip("fastapi")


def test_serve_benchmark_runs_end_to_end(tmp_path):
    out = tmp_path / "serve.json"
    proc = run_bench("serve", "--seconds", "1", "--warmup", "0.3", "--rounds", "1", "--modes", "boxes",
                     "--clients", "2", "--memory-requests", "60", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    runs = res["runs"]
    assert [r["batching"] for r in runs] == ["off", "on"] and all(r["exit_status"] == 0 for r in runs)
    assert all(r["requests"] > 0 and r["errors"] == 0 and r["cpu_ms_per_request"] > 0 for r in runs)
    assert res["memory"]["requests"] == 60 and res["memory"]["errors"] == 0
    assert res["machine"]["cpu_model"] and "batching on / off" in proc.stdout
