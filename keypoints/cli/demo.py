"""Draw keypoints on images, folders, videos and webcams (the model's skeleton; left green, right orange, centre blue).

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
--output/<name>.mp4 when --output is a folder), one output frame per input frame (a warning says when a video
stops decoding early). The flip test is off by default here (real time); --flip turns it on. Images are read with
their EXIF orientation ignored, as datasets are; --exif rotates phone photos upright (not with --boxes-from,
whose boxes refer to the stored pixels). A model of another dataset (tools/train.py on any COCO keypoint file) is
drawn with that dataset's skeleton and colours from its checkpoint; --boxes-from then reads the boxes of its
category, and the person detector is left out (boxes: given, or full frame and tracking).

Identities and smoothing (docs/video.md): every person gets a track id, drawn as ``#id`` above its box and written
as ``track_id`` in --save-json; in videos and camera streams ids stay with a person while they stay in view
(matched by OKS between frames, in every box mode), and keypoints are smoothed per person by the One-Euro filter
(--smoothing one-euro, the model config's video section: --min-cutoff Hz, --beta 1/pixel) at the video's frame
times (index / FPS) or, for cameras, the wall clock. Images are never smoothed and each is on its own (ids
restart at 1 on every image).

    python tools/demo.py --checkpoint best.pth --input clip.mp4 --save-json clip.json --min-cutoff 0.5 --beta 0.03
    python tools/demo.py --checkpoint best.pth --input clip.mp4 --smoothing none       # raw keypoints, ids only
"""
from __future__ import annotations

import argparse
import collections
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from keypoints.backends import BACKENDS, load_backend
from keypoints.coco_files import load_coco, read_detections
from keypoints.detection import DETECTORS, PersonDetector, find_local_detector
from keypoints.media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, has_display, open_source, open_video_writer
from keypoints.predictor import PoseEstimator
from keypoints.smoothing import SMOOTHING
from keypoints.utils.cli import run_cli
from keypoints.outputs import (check_output, child_path, commit_partial, discard_partial, distinct_outputs,
                               partial_path, atomic_path, write_json)
from keypoints.utils.runtime import check_number, select_device
from keypoints.visualize import draw_prediction


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True,
                   help="checkpoint from tools/train.py, or an .onnx / .pt2 file from tools/export.py")
    p.add_argument("--input", required=True, help="image, folder of images, video file or camera index (0, 1, ...)")
    p.add_argument("--output", default="outputs/demo", help="output folder (images) or .mp4 file (video, camera)")
    p.add_argument("--show", action="store_true", help="also show a window (only where a display exists)")
    p.add_argument("--kpt-thr", type=float, default=0.3, help="draw (and track) keypoints scoring above this")
    p.add_argument("--save-json", help="write every frame's people (keypoints, box, score, box mode) here")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing output files (the video, images of the same names, --save-json)")
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
    p.add_argument("--backend", default="auto", choices=list(BACKENDS),
                   help="runtime of the model (auto: by the file's content: checkpoint -> torch, ONNX -> onnxruntime, "
                        ".pt2 package -> compiled)")
    p.add_argument("--trust-code", action="store_true",
                   help="allow loading a model file that holds native code (an AOTInductor .pt2 package runs it)")
    p.add_argument("--exif", action="store_true", help="apply images' EXIF orientation (phone photos without boxes)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="torch backend device")
    p.add_argument("--threads", type=int, help="PyTorch and ONNX Runtime threads (default: every core)")
    p.add_argument("--flip", action="store_true", help="flip test (twice the network time)")
    p.add_argument("--smoothing", choices=SMOOTHING, default=None,
                   help="keypoint smoothing per tracked person (default: the model config's video.smoothing, "
                        "one-euro, for videos and cameras; images are never smoothed: one-euro with images is an "
                        "error)")
    p.add_argument("--min-cutoff", type=float, help="One-Euro minimum cutoff in Hz (default: the model config's; "
                   "lower: steadier still people, more lag)")
    p.add_argument("--beta", type=float, help="One-Euro speed coefficient in 1/pixel (default: the model config's; "
                   "higher: less lag on fast motion)")
    return p


def load_detector(args: argparse.Namespace, device) -> PersonDetector | None:
    name = args.detector
    if name == "auto":
        name = find_local_detector() if args.detector_weights is None else "ssdlite320_mobilenet_v3_large"
    if name in (None, "none"):
        return None
    return PersonDetector.from_weights(name, args.detector_weights, score_thr=args.det_score_thr, device=device)


def load_given_boxes(args: argparse.Namespace, category_id: int | tuple[int, ...] = 1
                     ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """image id -> (boxes (N, 4) xywh, scores (N,)) of the detections of ``category_id`` (the model's) scoring at
    least --det-score-thr."""
    return read_detections(args.boxes_from, category_id=category_id, score_thr=args.det_score_thr).by_image()


def image_id_lookup(args: argparse.Namespace, given: dict) -> dict[str, int] | None:
    """File name -> image id from --ann-file (None: ids are the file names' numbers). Detections naming images the
    annotation file does not have are an error, as in tools/test.py."""
    if not args.ann_file:
        return None
    coco = load_coco(args.ann_file, hint="pass the annotation file of the images")
    unknown = sorted(set(given) - set(coco.imgs))
    if unknown:
        raise ValueError(f"{args.boxes_from} names {len(unknown)} image ids not in {args.ann_file} (e.g. "
                         f"{unknown[:5]}); pass the detections of these images")
    return {im["file_name"]: image_id for image_id, im in coco.imgs.items()}


def image_id_of(name: str, names: dict[str, int] | None) -> int:
    if names is not None and name in names:
        return names[name]
    stem = Path(name).stem
    if not stem.isdigit():
        raise ValueError(f"cannot tell the image id of {name} for --boxes-from: name files by their COCO id "
                         f"(000000000785.jpg) or pass --ann-file")
    return int(stem)


def output_path(args: argparse.Namespace, kind: str) -> Path:
    out = Path(args.output)
    if kind == "images" or out.suffix.lower() in VIDEO_EXTENSIONS:
        return out
    stem = Path(args.input).stem if kind == "video" else f"camera{args.input}"
    return out / f"{stem}.mp4"


def demo_inputs(args: argparse.Namespace) -> list:
    """The command's inputs, which no output may be, or (an output folder) hold."""
    return [args.input, args.checkpoint, args.boxes_from, args.ann_file, args.detector_weights]


def check_outputs(args: argparse.Namespace, source, out: Path, single_image: bool) -> None:
    """--output against the output policy (keypoints.outputs), before a model is loaded: never an input (an output
    folder never holds one), an existing file replaced only with --overwrite and only by one of its kind, image names
    from the input kept inside the output folder, and not the --save-json file."""
    inputs = demo_inputs(args)
    if source.kind == "images" and not single_image:
        if out.suffix.lower() in (*IMAGE_EXTENSIONS, *VIDEO_EXTENSIONS):  # not a folder name a user would mean
            what = "one image" if out.suffix.lower() in IMAGE_EXTENSIONS else "a video"
            raise ValueError(f"--output {out} names {what}, but {source.spec} has {source.length} image(s); pass an "
                             f"output folder" + (" (or an image file name)" if source.length == 1 else ""))
        check_output(out, flag="--output", kind="folder", inputs=inputs, folder=True)
        for path in source.paths[: source.length]:
            check_output(child_path(out, path.name, "image name"), flag="--output", kind="image",
                         overwrite=args.overwrite)
    else:
        check_output(out, flag="--output", kind="image" if single_image else "video", inputs=inputs,
                     overwrite=args.overwrite)
    distinct_outputs({"--output": out, "--save-json": args.save_json})


def check_args(args: argparse.Namespace) -> None:
    """Everything the command line can get wrong, before a model is loaded."""
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {args.threads}")
    if args.max_frames < 0:
        raise ValueError(f"--max-frames must be 0 (all) or a positive count, got {args.max_frames}")
    if args.redetect_every < 1:
        raise ValueError(f"--redetect-every must be at least 1 frame, got {args.redetect_every}")
    if args.boxes_from and args.exif:
        raise ValueError("--exif cannot be used with --boxes-from: the boxes refer to the stored (unrotated) pixels")
    if args.min_cutoff is not None and not (math.isfinite(args.min_cutoff) and args.min_cutoff > 0):
        raise ValueError(f"--min-cutoff must be a finite, positive frequency in Hz, got {args.min_cutoff}")
    if args.beta is not None and not (math.isfinite(args.beta) and args.beta >= 0):
        raise ValueError(f"--beta must be a finite number >= 0 (1/pixel; 0: a plain low-pass), got {args.beta}")
    check_number("--kpt-thr", args.kpt_thr, 0, 1, what="a keypoint score")
    check_number("--det-score-thr", args.det_score_thr, 0, 1, what="a box score")
    if args.save_json:
        check_output(args.save_json, flag="--save-json", kind="json", inputs=demo_inputs(args),
                     overwrite=args.overwrite)


def main(args: argparse.Namespace) -> dict:
    check_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    source = open_source(args.input, max_frames=args.max_frames, exif=args.exif)
    if args.boxes_from and source.kind != "images":
        raise ValueError("--boxes-from applies to images and folders; videos and cameras use the detector or tracking")
    if args.smoothing == "one-euro" and source.kind == "images":
        raise ValueError("--smoothing one-euro applies to videos and cameras; images are each on their own and never "
                         "smoothed (leave --smoothing out)")
    out = output_path(args, source.kind)
    single_image = source.kind == "images" and out.suffix.lower() in IMAGE_EXTENSIONS and source.length == 1
    check_outputs(args, source, out, single_image)
    device = select_device(args.device)
    backend = load_backend(args.checkpoint, args.backend, trust_code=args.trust_code, device=device,
                           threads=args.threads)
    meta = backend.info.metadata
    given = load_given_boxes(args, meta.category_ids) if args.boxes_from else None
    names = image_id_lookup(args, given) if given is not None else None
    person = meta.category_name == "person"
    if not person and not args.boxes_from and args.detector not in ("auto", "none"):
        raise ValueError(f"--detector {args.detector} finds people, but the model's keypoints are of "
                         f"{meta.category_name!r}; pass --boxes-from with boxes of that category, or --detector none")
    detector = None if args.boxes_from or not person else load_detector(args, device)
    stream = source.kind != "images"
    smoothing = (args.smoothing or backend.config.video.smoothing) if stream else "none"
    estimator = PoseEstimator.from_config(backend, backend.config, flip=args.flip, detector=detector,
                                          redetect_every=args.redetect_every, track_kpt_thr=args.kpt_thr,
                                          tracking=True, smoothing=smoothing, min_cutoff=args.min_cutoff,
                                          beta=args.beta)
    boxes_note = f"given ({args.boxes_from})" if given is not None else \
        f"detector {detector.name} every {args.redetect_every} frames, tracking between" if detector else \
        "no detector: full frame, then tracked from the keypoints" + (" (each image on its own)"
                                                                      if source.kind == "images" else "")
    smoothing_note = "none" if smoothing == "none" else \
        f"{smoothing} (min cutoff {estimator.pose_tracker.min_cutoff:g} Hz, beta {estimator.pose_tracker.beta:g}/px)"
    print(f"{source}; backend {estimator.backend.name}; keypoints: {meta.describe()}; boxes: {boxes_note}; "
          f"smoothing: {smoothing_note}; output {out}")
    show = args.show and has_display()
    if args.show and not show:
        print("warning: --show ignored: no display (DISPLAY/WAYLAND_DISPLAY unset); writing files only",
              file=sys.stderr)
    writer, frames_json, modes, no_boxes = None, [], collections.Counter(), 0
    fps, start, n, people = None, time.perf_counter(), 0, 0
    interrupted = finished = False
    video_tmp = partial_path(out) if source.kind != "images" else None  # replaces --output when done, or on Ctrl-C
    last = start
    try:
        for frame in source:
            if source.kind == "images":
                estimator.reset()  # each image on its own: boxes, ids
            # Seconds: a video's frame time; None (the wall clock) for cameras and images.
            timestamp = frame.index / source.fps if source.kind == "video" else None
            if given is not None:
                boxes, scores = given.get(image_id_of(frame.name, names), (np.zeros((0, 4)), np.zeros(0)))
                no_boxes += len(boxes) == 0
                prediction = estimator(frame.image, boxes=boxes, box_scores=scores, timestamp=timestamp)
            else:
                prediction = estimator(frame.image, timestamp=timestamp)
            now = time.perf_counter()  # frame to frame: reading, predicting, drawing and writing the last one
            rate, last = 1.0 / max(now - last, 1e-6), now
            fps = rate if fps is None else 0.9 * fps + 0.1 * rate  # smoothed over about 10 frames
            canvas = draw_prediction(frame.image, prediction, kpt_thr=args.kpt_thr, fps=fps, metadata=meta)
            modes[prediction.box_mode] += 1
            people += len(prediction.people)
            if args.save_json:  # kept only when asked for: a webcam runs for hours
                frames_json.append({"index": frame.index, "name": frame.name, **prediction.to_dict()})
            if source.kind == "images":
                target = out if single_image else child_path(out, frame.name, "image name")
                try:
                    with atomic_path(target) as tmp:  # same suffix: OpenCV picks the encoder by it
                        written = cv2.imwrite(str(tmp), canvas)
                        if not written:
                            discard_partial(tmp)
                except (OSError, cv2.error) as e:
                    raise ValueError(f"cannot write {target} ({e}); check the --output folder") from None
                if not written:
                    problem = "use an image extension such as .jpg or .png" if target.suffix.lower() not in \
                        IMAGE_EXTENSIONS else "check that the --output folder is writable"
                    raise ValueError(f"cannot write {target}; {problem}")
            else:
                if writer is None:
                    writer, written = open_video_writer(video_tmp, source.fps, (canvas.shape[1], canvas.shape[0]))
                    if written != video_tmp:  # no mp4v encoder here: MJPG, under --output's name with .avi
                        out = check_output(out.with_suffix(written.suffix), flag="--output", kind="video",
                                           inputs=demo_inputs(args), overwrite=args.overwrite)
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
        finished = True
    except KeyboardInterrupt:  # deliver what is done: the frames so far (a complete video) and --save-json
        interrupted = finished = True
    finally:
        source.close()
        if writer is not None:
            writer.release()
        if video_tmp is not None and finished:
            out = commit_partial(video_tmp, out) or out
        elif video_tmp is not None:  # an error: the previous --output stays as it was
            discard_partial(video_tmp)
        if show:
            cv2.destroyAllWindows()
    elapsed = time.perf_counter() - start
    if source.ended_early and not interrupted:  # stopped by Ctrl-C, not by the file
        print(f"warning: {source.spec} stopped decoding after {source.frames_read} of the {source.length} frames its "
              f"container announces (cut short or corrupt); {out} holds {n} frames", file=sys.stderr)
    if no_boxes:
        print(f"warning: {no_boxes} of {n} images had no boxes in {args.boxes_from} (score >= "
              f"{args.det_score_thr:g}); they were drawn without people", file=sys.stderr)
    summary = {"frames": n, "output": str(out) if n else None, "box_modes": dict(modes),
               "fps": n / elapsed if elapsed else 0.0, "people": people, "smoothing": smoothing}
    if args.save_json:
        write_json(args.save_json, {"input": str(args.input), "checkpoint": str(args.checkpoint),
                                    "backend": estimator.backend.name, "interrupted": interrupted,
                                    "frames": frames_json}, indent=None)
    noun = "people" if person else f"{meta.category_name}(s)"
    print(f"{n} frames, {people} {noun}, {summary['fps']:.1f} FPS overall (reading, drawing and writing "
          f"included); box modes {dict(modes)}; " + (f"wrote {out}" if n else "wrote nothing")
          + (f" and {args.save_json}" if args.save_json else "") + (" (interrupted)" if interrupted else ""))
    if interrupted:
        raise KeyboardInterrupt  # exit status 130, once what was done is written
    return summary


def cli() -> None:
    run_cli(main, get_args_parser())


if __name__ == "__main__":
    cli()
