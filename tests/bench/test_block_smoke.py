"""bench.block run as a user runs it (a subprocess from the repository root): a tiny block end to
end with its JSON, and the --profile option's argument handling (the profile needs CUDA)."""
import json

import pytest
import torch

from tests.helpers import run_bench


def test_block_benchmark_runs_and_counts_bytes(tmp_path):
    out = tmp_path / "block.json"
    proc = run_bench("block", "--shape", "2", "4", "6", "5", "--threads", "1", "--rounds", "1", "--no-compile",
                     "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert set(result["variants"]) == {"eager", "fused"}
    # x is 2*4*6*5 floats (960 B); pooled 2*4*3*2 = 48 elements (192 B as floats, 48 B as idx):
    # forward reads x twice, writes y, xp, idx; backward reads dy, y, xp, then x, dy, y, idx, writes dx
    assert result["bytes_fused"] == 2 * 960 + 2 * 192 + 48 + 3 * 192 + 960 + 2 * 192 + 48 + 960
    assert all(v["median_s"] > 0 and v["fraction_of_copy_bw"] > 0 for v in result["variants"].values())
    assert result["machine"]["cpu_model"] and result["shape"] == [2, 4, 6, 5]
    assert "fused" in proc.stdout.splitlines()[-1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error a machine without CUDA gives")
def test_profile_without_cuda_is_a_one_line_error():
    proc = run_bench("block", "--profile")
    assert proc.returncode == 1
    assert proc.stderr.strip() == "bench.block: --profile needs a CUDA device (torch.cuda.is_available() is False)"


def test_bad_shape_is_a_one_line_error():
    proc = run_bench("block", "--shape", "2", "4", "1", "5")
    assert proc.returncode == 1 and proc.stderr.strip().startswith("bench.block: --shape N C H W")
