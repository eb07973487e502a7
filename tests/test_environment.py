"""The install keeps exactly one OpenCV distribution (see README, "One OpenCV")."""
import pytest

from keypoints.utils import env


def test_exactly_one_opencv_is_installed():
    found = env.check_single_opencv()
    assert found.split("==")[0] in env.OPENCV_DISTRIBUTIONS


def test_two_opencv_wheels_are_reported(monkeypatch):
    monkeypatch.setattr(env, "opencv_distributions", lambda: ["opencv-python==5.0", "opencv-python-headless==5.0"])
    with pytest.raises(RuntimeError, match="expected exactly one OpenCV distribution.*run `make install`"):
        env.check_single_opencv()
