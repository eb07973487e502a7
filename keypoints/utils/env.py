"""Environment checks: exactly one OpenCV distribution owns the ``cv2`` package.

albumentations depends on opencv-python-headless while this project wants opencv-python (GUI windows
for the webcam demo); both write the same ``cv2/`` folder, so having two installed breaks cv2 as soon
as either is uninstalled or upgraded. ``make install`` keeps exactly one (see README, "One OpenCV").

    python -m keypoints.utils.env    # prints the installed OpenCV distribution, exits 1 unless exactly one
"""
from __future__ import annotations

import sys
from importlib import metadata

OPENCV_DISTRIBUTIONS = ("opencv-python", "opencv-python-headless", "opencv-contrib-python",
                        "opencv-contrib-python-headless")


def opencv_distributions() -> list[str]:
    """Installed OpenCV wheels as ``name==version``."""
    found = []
    for name in OPENCV_DISTRIBUTIONS:
        try:
            found.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return found


def check_single_opencv() -> str:
    found = opencv_distributions()
    if len(found) != 1:
        raise RuntimeError(f"expected exactly one OpenCV distribution, found {found or 'none'}; run `make install` "
                           f"(or pip uninstall all but one of them and reinstall it with --force-reinstall --no-deps)")
    import cv2  # noqa: F401 - the import proves the remaining one is intact

    return found[0]


if __name__ == "__main__":
    try:
        print(f"OpenCV: {check_single_opencv()}")
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
