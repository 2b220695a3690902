"""bench.faces run as a user runs it: counts faces found with and without equalizeHist and the
IoU of boxes between detections, and writes its JSON."""
import json

from tests.helpers import run_bench


def test_faces_benchmark_runs_end_to_end(tmp_path):
    out = tmp_path / "faces.json"
    proc = run_bench("faces", "--frames", "6", "--quick", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    eq, plain = res["detection"]["equalizeHist"], res["detection"]["plain"]
    assert set(eq) == set(plain) and eq["grace_hopper.jpg"] == {"faces": 1, "found": 1, "false": 0}
    clip = plain["clip flat, face 60 px"]
    assert clip["faces"] == 12 and clip["frames"] == 6 and 0 <= clip["found"] <= 12
    for row in res["tracking"].values():
        assert 0.0 <= row["hold"]["mean_iou"] <= 1.0 and 0.0 <= row["constant velocity"]["mean_iou"] <= 1.0
    assert "| input | faces |" in proc.stdout and res["machine"]["cpu_model"]
