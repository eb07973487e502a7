# The two commands of the README:
#   make quickstart   install, generate synthetic data, train the small model on CPU, evaluate, draw a demo image
#   make test         install, run the test suite (what CI runs)
# `make install OPENCV=headless` keeps opencv-python-headless instead of the GUI build (servers without a display).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OPENCV ?= gui
QUICKSTART := outputs/quickstart
export NO_ALBUMENTATIONS_UPDATE := 1

ifeq ($(OPENCV),headless)
  CV_KEEP := opencv-python-headless
  CV_DROP := opencv-python
else
  CV_KEEP := opencv-python
  CV_DROP := opencv-python-headless
endif

.PHONY: install quickstart test test-slow benchmark docs clean

$(BIN)/.installed-$(OPENCV): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The torch/torchvision pair the project is tested with (a matching pair is required).
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e ".[dev]"
	# One OpenCV: albumentations pulls opencv-python-headless, which writes the same cv2/ folder as
	# opencv-python. Remove the other one and reinstall the kept one so its files are intact.
	$(BIN)/python -m pip uninstall -q -y $(CV_DROP)
	$(BIN)/python -m pip install -q --force-reinstall --no-deps "$(CV_KEEP)>=4.9,<6"
	$(BIN)/python -m keypoints.utils.env
	rm -f $(BIN)/.installed-*
	touch $@

install: $(BIN)/.installed-$(OPENCV)

test: install
	$(BIN)/python -m pytest

test-slow: install
	$(BIN)/python -m pytest -m slow

quickstart: install
	$(BIN)/python tools/make_synthetic.py --out data/synthetic --overwrite
	$(BIN)/python tools/train.py --config configs/quickstart.yaml --output-dir $(QUICKSTART) --device cpu --no-progress \
		--overwrite
	$(BIN)/python tools/test.py --config configs/quickstart.yaml --checkpoint $(QUICKSTART)/best.pth \
		--metrics-json $(QUICKSTART)/metrics_test.json --out $(QUICKSTART)/results_val.json --overwrite
	$(BIN)/python tools/demo.py --checkpoint $(QUICKSTART)/best.pth --input data/synthetic/val2017 \
		--output $(QUICKSTART)/demo --max-images 4 --boxes-from data/synthetic/person_detection_results/detections_val2017.json \
		--overwrite

benchmark: install
	$(BIN)/python tools/benchmark.py --markdown --json outputs/benchmark.json --overwrite

# The tables and figures of docs/ from the raw results in results/ (nothing is measured here).
docs: install
	$(BIN)/python tools/docs.py --figures

clean:
	rm -rf $(VENV) outputs data/synthetic .pytest_cache *.egg-info
