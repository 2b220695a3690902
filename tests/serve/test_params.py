"""Request parameters and limits, without a server."""
from __future__ import annotations

import pytest

from glamor_fast.serve.limits import ApiError, Limits
from glamor_fast.serve.params import check_boxes_inside, parse_boxes, parse_flag
from glamor_fast.serve.uploads import upload_kind


def test_boxes_are_parsed_rounded_and_checked():
    lim = Limits(max_faces=2)
    assert parse_boxes(None, lim) is None
    assert parse_boxes("[[1, 2.4, 30, 40.6]]", lim) == [(1, 2, 30, 41)]
    for text, says in [("[[1,2,3,4]", "not JSON"), ('{"a": 1}', "JSON list"), ("[[1,2,3]]", "boxes[0]"),
                       ('[["1",2,3,4]]', "boxes[0]"), ("[[true,2,3,4]]", "boxes[0]"), ("[[5,5,5,9]]", "empty")]:
        with pytest.raises(ApiError, match=r"boxes") as exc:
            parse_boxes(text, lim)
        assert exc.value.status == 400 and says in exc.value.message
    with pytest.raises(ApiError) as exc:
        parse_boxes("[[0,0,1,1],[0,0,1,1],[0,0,1,1]]", lim)
    assert (exc.value.status, exc.value.limit, exc.value.value) == (413, "max_faces", 2)
    check_boxes_inside([(0, 0, 10, 10)], 10, 10)
    with pytest.raises(ApiError, match="boxes.1.*not inside the 10x10"):
        check_boxes_inside([(0, 0, 10, 10), (0, 0, 11, 10)], 10, 10)


def test_content_types_and_flags():
    assert [upload_kind(t) for t in (None, "application/octet-stream", "image/png", "video/mp4; codecs=x",
                                     "multipart/form-data; boundary=b")] == ["any", "any", "image", "video", "multipart"]
    with pytest.raises(ApiError) as exc:
        upload_kind("text/html")
    assert exc.value.status == 415
    assert parse_flag("1", "annotate") and not parse_flag(None, "annotate") and not parse_flag("0", "annotate")
    with pytest.raises(ApiError, match="annotate"):
        parse_flag("2", "annotate")


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match="--max-video-frames must be > 0"):
        Limits(max_video_frames=0)
