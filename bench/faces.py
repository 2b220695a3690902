"""Face detection for ``predict``: OpenCV's Haar cascade with and without ``equalizeHist``, and
boxes between detections held still or carried on with the last motion.

    python -m bench.faces [--frames 45] [--json PATH] [--quick]

Detection (``HaarFaceDetector(equalize=True|False)``, ``predict``'s settings: video frames on a
480-px copy, still images on a 1280-px copy, faces from 40 px):

- generated clips (tests/predict/footage.py ``faces_clip``: two copies of grace_hopper.jpg's head,
  faces of 50-80 px, swinging over a flat grey, a blurred-noise ``textured`` and a ``fine`` noise
  background; mp4v, read back; ``CLIPS``), every frame;
- real photos: grace_hopper.jpg (matplotlib), the same photo twice side by side, and, when
  scikit-image is installed, its astronaut (one face), camera (one face in profile: the frontal
  cascade is not expected to find it) and ten photos without faces.

A detection is a found face when its box has IoU >= 0.3 with a true face box (each true face
matched at most once); every other detection is a false box.

Tracking: the same clips (and one face sliding linearly), Haar without equalizeHist every 5
frames; for every true face of every frame, the IoU of the best box shown (0 when none),
averaged over all frames and over the frames between detections, with ``FaceTracker`` holding
boxes still between detections (the old behaviour), carrying the last motion (constant
velocity), and following the image's optical flow inside each box (``FaceTracker.follow``, what
``predict`` does now; constant velocity where the flow finds too few points).
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from .machine import machine_info

FOUND_IOU = 0.3
FACELESS = ["coffee", "chelsea", "rocket", "brick", "grass", "gravel", "coins", "horse", "hubble_deep_field",
            "page"]
# Hand-labelled face boxes (x1, y1, x2, y2) of scikit-image's photos (checked by eye on a 50-px grid).
SKIMAGE_FACES = {"astronaut": [(175, 70, 270, 175)], "camera": [(170, 90, 260, 190)]}


def match(found, truth) -> tuple[int, int]:
    """(true faces found, false boxes) of one image: greedy one-to-one matching at IoU >= FOUND_IOU."""
    from glamor_fast.predict.tracking import iou

    pairs = sorted(((iou(d, t), di, ti) for di, d in enumerate(found) for ti, t in enumerate(truth)), reverse=True)
    used_d, used_t = set(), set()
    for o, di, ti in pairs:
        if o >= FOUND_IOU and di not in used_d and ti not in used_t:
            used_d.add(di)
            used_t.add(ti)
    return len(used_t), len(found) - len(used_d)


def photos(skimage: bool = True) -> list[tuple[str, np.ndarray, list]]:
    from tests.predict.footage import GRACE_FACE, grace, two_faces

    out = [("grace_hopper.jpg", grace(), [GRACE_FACE]),
           ("grace_hopper.jpg twice", two_faces(), [GRACE_FACE, tuple(np.add(GRACE_FACE, [512, 0, 512, 0]))])]
    if not skimage:
        return out
    try:
        import skimage.data as data
    except ImportError:
        print("scikit-image not installed: its photos are left out")
        return out
    for name in [*SKIMAGE_FACES, *FACELESS]:
        img = getattr(data, name)()
        if img.dtype != np.uint8:
            img = (np.asarray(img, np.float64) * 255 / max(float(np.max(img)), 1e-12)).astype(np.uint8)
        if img.ndim == 2:
            img = np.stack([img] * 3, axis=-1)
        out.append((f"skimage {name}", np.ascontiguousarray(img[..., :3]), SKIMAGE_FACES.get(name, [])))
    return out


def detection(clips: dict, frames_of: dict, skimage: bool = True) -> dict:
    from glamor_fast.data.faces import HaarFaceDetector
    from glamor_fast.recognizer import DEFAULT_DETECT_SIDE, DEFAULT_MIN_FACE, IMAGE_DETECT_SIDE

    result, stills = {}, photos(skimage)
    for equalize in (True, False):
        video = HaarFaceDetector(max_side=DEFAULT_DETECT_SIDE, min_size=DEFAULT_MIN_FACE, equalize=equalize)
        still = HaarFaceDetector(max_side=IMAGE_DETECT_SIDE, min_size=DEFAULT_MIN_FACE, equalize=equalize)
        rows = {}
        for name, truth in clips.items():
            found = false = all_found = 0
            for frame, boxes in zip(frames_of[name], truth):
                f, x = match([d.box for d in video(frame)], boxes)
                found, false, all_found = found + f, false + x, all_found + (f == len(boxes))
            rows[f"clip {name}"] = {"faces": sum(map(len, truth)), "found": found, "false": false,
                                    "frames": len(truth), "frames_all_found": all_found}
        for name, img, truth in stills:
            f, x = match([d.box for d in still(img)], truth)
            rows[name] = {"faces": len(truth), "found": f, "false": x}
        result["equalizeHist" if equalize else "plain"] = rows
    return result


def tracking(clips: dict, frames_of: dict, every: int = 5) -> dict:
    from glamor_fast.data.faces import HaarFaceDetector
    import cv2

    from glamor_fast.predict.tracking import FaceTracker, iou
    from glamor_fast.recognizer import DEFAULT_DETECT_SIDE, DEFAULT_MIN_FACE, FLOW_SIDE

    detector = HaarFaceDetector(max_side=DEFAULT_DETECT_SIDE, min_size=DEFAULT_MIN_FACE, equalize=False)
    out = {}
    for name, truth in clips.items():
        frames = frames_of[name]
        found = {i: detector(frames[i]) for i in range(0, len(frames), every)}
        row = {}
        h, w = frames[0].shape[:2]
        scale = min(1.0, FLOW_SIDE / max(h, w))
        grays = [cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), (round(w * scale), round(h * scale)),
                            interpolation=cv2.INTER_AREA) for f in frames]
        for mode in ("hold", "constant velocity", "optical flow"):
            tracker, ious, between, follow_s = FaceTracker(), [], [], []
            for i in range(len(frames)):
                if i in found:
                    tracker.update(found[i], frame=i if mode != "hold" else None)
                elif mode == "optical flow" and i > 0:
                    t0 = time.perf_counter()
                    tracker.follow(grays[i - 1], grays[i], i, scale)
                    follow_s.append(time.perf_counter() - t0)
                shown = [t.box_at(i if mode != "hold" else None) for t in tracker.current()]
                for true in truth[i]:  # each true face: the best shown box's IoU (0 when none is shown)
                    best = max((iou(box, true) for box in shown), default=0.0)
                    ious.append(best)
                    if i not in found:
                        between.append(best)
            row[mode] = {"mean_iou": statistics.fmean(ious), "mean_iou_between": statistics.fmean(between)}
            if follow_s:  # the time of FaceTracker.follow per frame (all faces), milliseconds
                row[mode]["follow_ms"] = {"median": 1000 * statistics.median(follow_s),
                                          "max": 1000 * max(follow_s)}
        out[name] = row
    return out


CLIPS = {  # name: faces_clip arguments (two faces swinging, 45 frames at 15 fps, 640x360 unless said)
    "flat, face 60 px": dict(kind="flat", scale=0.3),
    "flat, face 80 px": dict(kind="flat", scale=0.4),
    "flat, whole photo, face 50 px, 480x270": dict(kind="flat", crop="full", scale=0.25, size=(480, 270)),
    "textured, face 60 px": dict(kind="textured", scale=0.3),
    "textured, face 80 px": dict(kind="textured", scale=0.4),
    "fine, face 80 px": dict(kind="fine", scale=0.4),
}
MOVING = {  # tracking only
    "linear, one face 80 px, 6 px/frame": dict(kind="textured", faces=1, motion="linear", speed=1.5),
}


def main(argv=None) -> int:
    from tests.predict.footage import FULL, faces_clip, read_frames

    p = argparse.ArgumentParser(prog="python -m bench.faces", description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=45)
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--quick", action="store_true",
                   help="one clip of each kind (flat 60 px; the linear slide) and matplotlib's photo only "
                        "(a smoke run)")
    args = p.parse_args(argv)
    chosen = {k: CLIPS[k] for k in list(CLIPS)[:1]} if args.quick else CLIPS
    clips, frames_of = {}, {}
    with tempfile.TemporaryDirectory(prefix="bench-faces-") as tmp:
        for k, (name, kw) in enumerate({**chosen, **MOVING}.items()):
            kw = dict(kw, crop=FULL) if kw.get("crop") == "full" else kw
            clips[name] = faces_clip(Path(tmp) / f"{k}.mp4", frames=args.frames, **kw)
            frames_of[name] = read_frames(Path(tmp) / f"{k}.mp4")
    info = machine_info(1)
    result = {"machine": info, "detection": detection({k: clips[k] for k in chosen}, frames_of, not args.quick),
              "tracking": tracking(clips, frames_of)}
    print(f"{info['cpu_model']}, load {info['load_average']}")
    print("| input | faces | equalizeHist: found / false | plain: found / false |")
    print("|---|---:|---:|---:|")
    eq, plain = result["detection"]["equalizeHist"], result["detection"]["plain"]
    for name in eq:
        a, b = eq[name], plain[name]
        extra = lambda r: f" ({r['frames_all_found']}/{r['frames']} frames all)" if "frames" in r else ""  # noqa: E731
        print(f"| {name} | {a['faces']} | {a['found']} / {a['false']}{extra(a)} | "
              f"{b['found']} / {b['false']}{extra(b)} |")
    modes = ("hold", "constant velocity", "optical flow")
    print("\n| clip | " + " | ".join(f"{m}: mean IoU (between detections)" for m in modes) + " |")
    print("|---|---:|---:|---:|")
    for name, row in result["tracking"].items():
        print(f"| {name} | " + " | ".join(f"{row[m]['mean_iou']:.3f} ({row[m]['mean_iou_between']:.3f})"
                                         for m in modes) + " |")
    print("\noptical flow, FaceTracker.follow per frame (all faces of the frame), ms median [max]: "
          + "; ".join(f"{name} {row['optical flow']['follow_ms']['median']:.1f} "
                      f"[{row['optical flow']['follow_ms']['max']:.1f}]" for name, row in result["tracking"].items()))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
