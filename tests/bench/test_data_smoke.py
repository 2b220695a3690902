"""bench.data run as a user runs it: makes a tree, prepares it and writes its JSON; a missing root
is a one-line error."""
import json

from tests.helpers import run_bench


def test_data_benchmark_runs_end_to_end(tmp_path):
    out = tmp_path / "data.json"
    proc = run_bench("data", str(tmp_path / "caer"), "--make", "1", "--seconds", "0.2", "--repeats", "1",
                     "--batch", "4", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    for key in ("on_the_fly", "cached", "cached_loader_only"):
        assert res[key]["samples_per_s"] > 0, key
    assert res["prepare"]["images"] == 7 and res["machine"]["cpu_model"]
    assert "cached / on the fly" in proc.stdout


def test_missing_root_is_a_one_line_error(tmp_path):
    proc = run_bench("data", str(tmp_path / "nothing"))
    assert proc.returncode == 1 and "train not found" in proc.stderr
