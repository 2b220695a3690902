"""The writers of glamor_fast.predict.outputs: atomic, and videos keep every frame and pixel."""
import numpy as np
import pytest

from glamor_fast.predict.outputs import JsonLines, VideoWriter, write_image, write_timeline

from .footage import count_frames


@pytest.mark.parametrize("size, written", [((160, 120), (160, 120)), ((161, 121), (162, 122))])
def test_video_writer_keeps_frame_count_rate_and_size(tmp_path, size, written):
    w = VideoWriter(tmp_path / "v.mp4", 15.0, size)
    assert w.padded == (size != written)
    for i in range(7):
        w.write(np.full((size[1], size[0], 3), 30 * i, np.uint8))
    assert not (tmp_path / "v.mp4").exists()  # only under its temporary name until closed
    assert w.close() == tmp_path / "v.mp4"
    assert count_frames(tmp_path / "v.mp4") == (7, pytest.approx(15.0), written)
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]


def test_video_writer_rejects_a_frame_of_another_size_and_abort_leaves_nothing(tmp_path):
    w = VideoWriter(tmp_path / "v.mp4", 10.0, (64, 48))
    with pytest.raises(ValueError, match="frame of 48x64 for a 64x48 video"):
        w.write(np.zeros((64, 48, 3), np.uint8))
    w.abort()
    assert list(tmp_path.iterdir()) == []


def test_image_and_jsonl_writers_replace_only_when_complete(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"old")
    write_image(tmp_path / "a.jpg", np.zeros((8, 8, 3), np.uint8))
    assert (tmp_path / "a.jpg").read_bytes()[:2] == b"\xff\xd8"  # a JPEG now
    (tmp_path / "p.jsonl").write_text("old\n")
    j = JsonLines(tmp_path / "p.jsonl")
    j.write({"a": 1})
    mark = j.mark()
    j.write({"b": 2})
    j.rewind(mark)
    assert (tmp_path / "p.jsonl").read_text() == "old\n"
    j.close()
    assert (tmp_path / "p.jsonl").read_text() == '{"a": 1}\n' and j.count == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg", "p.jsonl"]


def test_timeline_shows_the_longest_tracks_only(tmp_path, monkeypatch):
    import matplotlib.figure

    panels = []
    real = matplotlib.figure.Figure.subplots
    monkeypatch.setattr(matplotlib.figure.Figure, "subplots",
                        lambda self, n, *a, **k: panels.append(n) or real(self, n, *a, **k))
    tracks = {t: (np.arange(t + 1) / 10.0, np.full((t + 1, 3), 1 / 3)) for t in range(12)}
    png = write_timeline(tmp_path / "t.png", "clip", ["a", "b", "c"], tracks, max_panels=4)
    assert panels == [4] and png.stat().st_size > 1000
    write_timeline(tmp_path / "none.png", "clip", ["a", "b", "c"], {})
    assert panels == [4, 1] and [p.name for p in sorted(tmp_path.iterdir())] == ["none.png", "t.png"]


def test_timeline_panels_share_the_time_axis_of_the_whole_video(tmp_path, monkeypatch):
    import matplotlib.figure

    made = []
    real = matplotlib.figure.Figure.subplots
    monkeypatch.setattr(matplotlib.figure.Figure, "subplots",
                        lambda self, *a, **k: made.append(real(self, *a, **k)) or made[-1])
    early, late = np.linspace(0.0, 2.0, 5), np.linspace(6.0, 9.0, 5)  # a face leaves, another comes later
    write_timeline(tmp_path / "t.png", "clip", ["a", "b"], {0: (early, np.full((5, 2), 0.5)),
                                                            1: (late, np.full((5, 2), 0.5))}, duration=10.0)
    top, bottom = made[0][:, 0]
    assert top.get_shared_x_axes().joined(top, bottom)
    assert top.get_xlim() == bottom.get_xlim() == (0.0, 10.0)


def test_csv_records_flatten_boxes_and_probabilities_and_rewind(tmp_path):
    from glamor_fast.predict.csv_records import CsvRecords

    w = CsvRecords(tmp_path / "t.csv", ["source", "box", "probs"], {"probs": ["x", "y"]})
    w.write({"source": "a.jpg", "box": [1, 2, 3, 4], "probs": {"x": 0.25, "y": 0.75}})
    mark = w.mark()
    w.write({"source": "b.jpg", "box": None, "probs": None})
    w.rewind(mark)
    w.write({"source": "c,d.jpg", "box": None, "probs": None})
    assert not (tmp_path / "t.csv").exists()
    w.close()
    assert (tmp_path / "t.csv").read_text().splitlines() == [
        "source,box_x1,box_y1,box_x2,box_y2,probs_x,probs_y", "a.jpg,1,2,3,4,0.25,0.75", '"c,d.jpg",,,,,,']
    assert w.count == 2 and [p.name for p in tmp_path.iterdir()] == ["t.csv"]
