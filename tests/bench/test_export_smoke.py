"""bench.export run as a user runs it: an untrained network exported, compared and timed with its
JSON; a checkpoint that is not one is a one-line error."""
import json

from tests.helpers import run_bench


def test_export_benchmark_compares_and_times_both_engines(tmp_path):
    out = tmp_path / "export.json"
    proc = run_bench("export", "--threads", "1", "--rounds", "1", "--batches", "2", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert set(result["max_abs_diff"]) == {"random batch 1", "random batch 5", "random batch 32", "grace_hopper.jpg"}
    assert all(0 <= d <= 1e-5 for d in result["max_abs_diff"].values())
    assert [(r["engine"], r["batch"]) for r in result["timing"]] == [("pytorch", 2), ("onnxruntime", 2)]
    assert all(r["ms_per_image"] > 0 for r in result["timing"]) and result["machine"]["cpu_model"]


def test_bad_checkpoint_is_a_one_line_error(tmp_path):
    fake = tmp_path / "fake.pt"
    fake.write_text("not a checkpoint")
    proc = run_bench("export", "--checkpoint", str(fake))
    assert proc.returncode == 1
    err = proc.stderr.strip()
    assert err.startswith(f"bench.export: --checkpoint {fake}: ") and "\n" not in err, err
