"""Draw COCO poses on images, folders, videos and webcams (left green, right orange, centre blue).

    # a folder of images with boxes from a COCO detections file (the quickstart's last step)
    python tools/demo.py --checkpoint outputs/quickstart/best.pth --input data/synthetic/val2017 \\
        --output outputs/quickstart/demo --max-images 4 \\
        --boxes-from data/synthetic/person_detection_results/detections_val2017.json
    # a video: full frame, then boxes tracked from the keypoints (a detector when its weights are local); mp4 out
    python tools/demo.py --checkpoint best.pth --input clip.mp4 --output outputs/demo/clip.mp4 --save-json clip.json
    # the webcam, in a window (only where a display exists; otherwise files are written)
    python tools/demo.py --checkpoint best.pth --input 0 --show
    # the exported network under ONNX Runtime (tools/export.py)
    python tools/demo.py --checkpoint model.onnx --input clip.mp4

Person boxes, stated per frame in the overlay and the JSON: ``given`` (--boxes-from: image ids are the file
names' numbers, as COCO names its files, or come from --ann-file), ``detector`` (--detector NAME with local
weights: --detector-weights or the torch hub cache; ``auto`` takes one from the cache if present; never
downloaded), ``tracked`` and ``full-frame`` (no detector: the whole frame first, then the keypoint extent x 1.25
of the previous frame). Images of a folder are independent (tracking restarts on each). Outputs: images
are written under --output (a folder) with their names; videos and cameras to --output as .mp4 (or
--output/<name>.mp4 when --output is a folder), one output frame per input frame. The flip test is off by
default here (real time); --flip turns it on.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from keypoints.detection import DETECTORS, PersonDetector, find_local_detector  # noqa: E402
from keypoints.utils.io import read_json  # noqa: E402
from keypoints.predictor import PoseEstimator  # noqa: E402
from keypoints.utils.runtime import select_device  # noqa: E402
from keypoints.video import (IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, draw_prediction, has_display,  # noqa: E402
                             open_source, open_video_writer)
from keypoints.utils.cli import run_cli  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True,
                   help="checkpoint from tools/train.py, or an .onnx file from tools/export.py")
    p.add_argument("--input", required=True, help="image, folder of images, video file or camera index (0, 1, ...)")
    p.add_argument("--output", default="outputs/demo", help="output folder (images) or .mp4 file (video, camera)")
    p.add_argument("--show", action="store_true", help="also show a window (only where a display exists)")
    p.add_argument("--kpt-thr", type=float, default=0.3, help="draw (and track) keypoints scoring above this")
    p.add_argument("--save-json", help="write every frame's people (keypoints, box, score, box mode) here")
    p.add_argument("--max-images", "--max-frames", dest="max_frames", type=int, default=0, metavar="N",
                   help="stop after this many images or frames (0: all)")
    p.add_argument("--boxes-from", help="COCO detections JSON (list of {image_id, bbox, score}) for image inputs")
    p.add_argument("--ann-file", help="COCO annotation file mapping file names to image ids for --boxes-from")
    p.add_argument("--det-score-thr", type=float, default=0.5, help="drop given or detected boxes below this score")
    p.add_argument("--detector", default="auto", choices=["auto", "none", *DETECTORS],
                   help="person detector (auto: one whose weights are in the torch hub cache, else none)")
    p.add_argument("--detector-weights", help="state-dict file of the --detector network (with --detector auto: "
                   "an ssdlite320_mobilenet_v3_large file)")
    p.add_argument("--redetect-every", type=int, default=10, help="frames between detector runs (tracking between)")
    p.add_argument("--backend", choices=["torch", "onnxruntime"],
                   help="inference backend (default: onnxruntime for an .onnx --checkpoint, else torch)")
    p.add_argument("--onnx", help="ONNX model for --backend onnxruntime with a .pth --checkpoint")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="torch backend device")
    p.add_argument("--threads", type=int, help="PyTorch and ONNX Runtime threads (default: every core)")
    p.add_argument("--flip", action="store_true", help="flip test (twice the network time)")
    return p


def load_detector(args: argparse.Namespace, device) -> PersonDetector | None:
    name = args.detector
    if name == "auto":
        name = find_local_detector() if args.detector_weights is None else "ssdlite320_mobilenet_v3_large"
    if name in (None, "none"):
        return None
    return PersonDetector.from_weights(name, args.detector_weights, score_thr=args.det_score_thr, device=device)


def load_given_boxes(args: argparse.Namespace) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """image id -> (boxes (N, 4) xywh, scores (N,)) of the person detections scoring at least --det-score-thr."""
    path = Path(args.boxes_from)
    dets = read_json(path, "detections file")
    if not isinstance(dets, list) or not all(isinstance(d, dict) and "image_id" in d and "bbox" in d for d in dets):
        raise ValueError(f"{path} is not a COCO detections file (a list of {{image_id, bbox, score}})")
    grouped: dict[int, list] = collections.defaultdict(list)
    for d in dets:
        if d.get("category_id", 1) == 1 and d.get("score", 1.0) >= args.det_score_thr:
            grouped[int(d["image_id"])].append((*d["bbox"], d.get("score", 1.0)))
    return {k: (np.array(v, np.float32)[:, :4], np.array(v, np.float32)[:, 4]) for k, v in grouped.items()}


def image_id_lookup(args: argparse.Namespace):
    names = {}
    if args.ann_file:
        names = {im["file_name"]: im["id"] for im in json.loads(Path(args.ann_file).read_text())["images"]}

    def image_id(name: str) -> int:
        if name in names:
            return names[name]
        stem = Path(name).stem
        if not stem.isdigit():
            raise ValueError(f"cannot tell the image id of {name} for --boxes-from: name files by their COCO id "
                             f"(000000000785.jpg) or pass --ann-file")
        return int(stem)
    return image_id


def output_path(args: argparse.Namespace, kind: str) -> Path:
    out = Path(args.output)
    if kind == "images" or out.suffix.lower() in VIDEO_EXTENSIONS:
        return out
    stem = Path(args.input).stem if kind == "video" else f"camera{args.input}"
    return out / f"{stem}.mp4"


def main(args: argparse.Namespace) -> dict:
    if args.backend is None:
        args.backend = "onnxruntime" if Path(args.checkpoint).suffix == ".onnx" else "torch"
    if args.threads:
        torch.set_num_threads(args.threads)
    source = open_source(args.input, max_frames=args.max_frames)
    if args.boxes_from and source.kind != "images":
        raise ValueError("--boxes-from applies to images and folders; videos and cameras use the detector or tracking")
    device = select_device(args.device) if args.backend == "torch" else "cpu"
    detector = None if args.boxes_from else load_detector(args, device)
    estimator = PoseEstimator.from_checkpoint(args.checkpoint, device=args.device, backend=args.backend,
                                              onnx_path=args.onnx, threads=args.threads, flip=args.flip,
                                              detector=detector, redetect_every=args.redetect_every,
                                              track_kpt_thr=args.kpt_thr)
    given = load_given_boxes(args) if args.boxes_from else None
    image_id = image_id_lookup(args) if given is not None else None
    boxes_note = f"given ({args.boxes_from})" if given is not None else \
        f"detector {detector.name} every {args.redetect_every} frames, tracking between" if detector else \
        "no detector: full frame, then tracked from the keypoints" + (" (each image on its own)"
                                                                     if source.kind == "images" else "")
    out = output_path(args, source.kind)
    print(f"{source}; backend {args.backend}; person boxes: {boxes_note}; output {out}")
    show = args.show and has_display()
    if args.show and not show:
        print("warning: --show ignored: no display (DISPLAY/WAYLAND_DISPLAY unset); writing files only",
              file=sys.stderr)
    writer, frames_json, modes = None, [], collections.Counter()
    fps, start, n = None, time.perf_counter(), 0
    last = start
    try:
        for frame in source:
            if given is not None:
                boxes, scores = given.get(image_id(frame.name), (np.zeros((0, 4)), np.zeros(0)))
                prediction = estimator(frame.image, boxes=boxes, box_scores=scores)
            else:
                if source.kind == "images":
                    estimator.reset()
                prediction = estimator(frame.image)
            now = time.perf_counter()  # frame to frame: reading, predicting, drawing and writing the last one
            rate, last = 1.0 / max(now - last, 1e-6), now
            fps = rate if fps is None else 0.9 * fps + 0.1 * rate  # smoothed over about 10 frames
            canvas = draw_prediction(frame.image, prediction, kpt_thr=args.kpt_thr, fps=fps)
            modes[prediction.box_mode] += 1
            frames_json.append({"index": frame.index, "name": frame.name, **prediction.to_dict()})
            if source.kind == "images":
                target = out if out.suffix.lower() in IMAGE_EXTENSIONS and source.length == 1 else out / frame.name
                target.parent.mkdir(parents=True, exist_ok=True)
                if not cv2.imwrite(str(target), canvas):
                    raise ValueError(f"cannot write {target}; use an image extension such as .jpg or .png")
            else:
                if writer is None:
                    writer, out = open_video_writer(out, source.fps, (canvas.shape[1], canvas.shape[0]))
                writer.write(canvas)
            n += 1
            if show:
                try:
                    cv2.imshow("keypoints demo (q to quit)", canvas)
                    if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                        break
                except cv2.error as e:  # a headless OpenCV build: no GUI at all
                    print(f"warning: cannot show a window ({str(e).splitlines()[-1][:80]}); writing files only",
                          file=sys.stderr)
                    show = False
    except KeyboardInterrupt:
        print("interrupted; closing the output", file=sys.stderr)
    finally:
        source.close()
        if writer is not None:
            writer.release()
        if show:
            cv2.destroyAllWindows()
    elapsed = time.perf_counter() - start
    summary = {"frames": n, "output": str(out), "box_modes": dict(modes), "fps": n / elapsed if elapsed else 0.0,
               "people": sum(len(f["people"]) for f in frames_json)}
    if args.save_json:
        Path(args.save_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.save_json).write_text(json.dumps({"input": str(args.input), "checkpoint": str(args.checkpoint),
                                                    "backend": args.backend, "frames": frames_json}))
    print(f"{n} frames, {summary['people']} people, {summary['fps']:.1f} FPS overall (reading, drawing and writing "
          f"included); box modes {dict(modes)}; wrote {out}" + (f" and {args.save_json}" if args.save_json else ""))
    return summary


if __name__ == "__main__":
    run_cli(main, get_args_parser())
