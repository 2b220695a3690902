"""Smoke test: the GLA benchmark runs end to end on the tiny suite and writes sensible JSON."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_gla_runs_end_to_end(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.gla", "--suite", "tiny", "--quick", "--device", "cpu",
         "--backends", "eager", "--threads", "1", "--min-time", "0.05", "--json", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "torch.mm" in proc.stdout and "eager" in proc.stdout

    result = json.loads(out.read_text())
    meta = result["meta"]
    for key in ("cpu_model", "threads", "torch", "triton", "git_commit", "date_utc", "load_average"):
        assert key in meta, key
    assert meta["threads"] == 1
    dev = result["devices"]["cpu"]
    assert dev["limits"]["copy_bytes_per_s"] > 0 and dev["limits"]["mm_flops_per_s"] > 0
    assert [c["case"]["suite"] for c in dev["cases"]] == ["tiny", "tiny"]
    for case in dev["cases"]:
        assert case["mm"]["median_s"] > 0
        r = case["backends"]["eager"]
        for mode in ("fwd", "bwd", "fwdbwd"):
            assert r[mode]["median_s"] > 0 and r[mode]["iqr_s"] >= 0 and r[mode]["samples"] >= 1
            roof = r[mode]["roofline"]
            assert roof["bytes"] > 0 and roof["flops"] > 0 and roof["fraction"] > 0
        # eager materialises the (B, N, Df + Dc) concatenation: its memory must show it
        c = case["case"]
        assert r["mem_fwdbwd_bytes"] >= 4 * c["B"] * c["N"] * (c["Df"] + c["Dc"])
        assert r["mem_fwd_bytes"] > 0
        assert r["ratios"]["speedup_vs_eager_fwd"] == 1.0
        assert r["ratios"]["fwd_over_mm"] > 0


def test_bench_block_runs_and_counts_bytes():
    from bench.block import fused_bytes, run_block

    lines = []
    out = run_block((2, 4, 6, 5), threads=1, rounds=1, compile_ok=False, log=lines.append)
    assert set(out["variants"]) == {"eager", "fused"}
    # x is 2*4*6*5 floats (960 B); pooled 2*4*3*2 = 48 elements (192 B as floats, 48 B as idx)
    assert fused_bytes((2, 4, 6, 5)) == out["bytes_fused"] == 2 * 960 + 2 * 192 + 48 + 3 * 192 + 960 + 2 * 192 + 48 + 960
    assert all(v["median_s"] > 0 and v["fraction_of_copy_bw"] > 0 for v in out["variants"].values())
    assert "fused" in lines[-1]
