"""bench.detect_pool run as a user runs it, briefly: both pools find the face and report a rate."""
from tests.helpers import run_bench


def test_detect_pool_benchmark_runs_end_to_end():
    proc = run_bench("detect_pool", "--images", "4", "--rounds", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "threads" in proc.stdout and "processes" in proc.stdout and "images/s" in proc.stdout
