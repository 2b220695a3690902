"""bench.gla run as a user runs it (a subprocess from the repository root): the tiny suite end to
end with its JSON, and the --probe option's argument handling (the probe itself needs CUDA)."""
import json

import pytest
import torch

from tests.helpers import run_bench


def test_gla_benchmark_runs_end_to_end(tmp_path):
    out = tmp_path / "bench.json"
    proc = run_bench("gla", "--suite", "tiny", "--quick", "--device", "cpu", "--backends", "eager", "split", "cpp",
                     "--threads", "1", "--rounds", "2", "--min-time", "0.05", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "torch.mm" in proc.stdout and "eager" in proc.stdout and "cpp" in proc.stdout

    result = json.loads(out.read_text())
    meta = result["meta"]
    for key in ("cpu_model", "threads", "torch", "triton", "git_commit", "date_utc", "load_average"):
        assert key in meta, key
    assert meta["threads"] == 1
    dev = result["devices"]["cpu"]
    assert dev["backends"] == ["eager", "split", "cpp"]
    assert dev["limits"]["copy_bytes_per_s"] > 0 and dev["limits"]["mm_flops_per_s"] > 0
    assert [c["case"]["suite"] for c in dev["cases"]] == ["tiny", "tiny"]
    for case in dev["cases"]:
        assert case["mm"]["median_s"] > 0
        for name, r in case["backends"].items():
            for mode in ("fwd", "bwd", "fwdbwd"):
                assert r[mode]["median_s"] > 0 and r[mode]["iqr_s"] >= 0 and r[mode]["samples"] == 2
                roof = r[mode]["roofline"]
                assert roof["bytes"] > 0 and roof["flops"] > 0 and roof["fraction"] > 0
            if name != "eager":  # the benchmark checks every backend's output against eager's
                assert r["rel_err_vs_eager"] < 1e-5 and not r["wrong"], name
        eager = case["backends"]["eager"]
        # eager materialises the (B, N, Df + Dc) concatenation: its memory must show it
        c = case["case"]
        assert eager["mem_fwdbwd_bytes"] >= 4 * c["B"] * c["N"] * (c["Df"] + c["Dc"])
        assert eager["mem_fwd_bytes"] > 0
        assert eager["ratios"]["speedup_vs_eager_fwd"] == 1.0
        assert case["backends"]["cpp"]["ratios"]["fwd_over_mm"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error a machine without CUDA gives")
def test_probe_without_cuda_is_a_one_line_error():
    proc = run_bench("gla", "--probe", "--probe-shape", "32", "7")
    assert proc.returncode == 1
    assert proc.stderr.strip() == "bench.gla: --probe needs a CUDA device (torch.cuda.is_available() is False)"


@pytest.mark.parametrize("args, message", [
    (["--probe-shape", "32"], "--probe-shape: expected 2 arguments"),
    (["--probe-dtype", "float64"], "--probe-dtype: invalid choice: 'float64'"),
])
def test_probe_arguments_are_checked(args, message):
    proc = run_bench("gla", "--probe", *args)
    assert proc.returncode == 2 and message in proc.stderr
