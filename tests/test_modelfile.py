"""The model-file owner (keypoints.modelfile) and the runtime registry, through the API and the real command lines:
files known by content, renamed files, the trust rule for code-bearing packages, export suffixes, the checkpoint
format's migration, a registry round trip for every runtime, fine-tuning initialisation by keypoint name, the run
lock, and no torch.load outside the owner."""
from __future__ import annotations

import re
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from conftest import COCO_MINI, ROOT, TRAINED_CHECKPOINT, run_tool
from keypoints.backends import RUNTIMES, ModelInfo, get_runtime, load_backend
from keypoints.config import config_to_dict, load_config
from keypoints.finetune import HEATMAP_KEYS, init_from_checkpoint
from keypoints.metadata import DatasetMeta
from keypoints.modelfile import (FORMAT_VERSION, Checkpoint, identify, read_checkpoint, read_state_dict,
                                 write_checkpoint)
from keypoints.models import build_model
from keypoints.predictor import PoseEstimator
from keypoints.training import RunLock


def _cli(tool: str, argv: list, monkeypatch, capsys) -> tuple[int, str]:
    code, _, err = run_tool(tool, argv, monkeypatch, capsys)
    return code, err


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A checkpoint (the committed trained one), its ONNX export and a crafted AOTInductor package (a PT2 zip
    whose library is junk: what matters is that nothing loads it without consent)."""
    folder = tmp_path_factory.mktemp("files")
    ckpt = folder / "model.pth"
    shutil.copyfile(TRAINED_CHECKPOINT, ckpt)
    backend = load_backend(ckpt, device="cpu")
    onnx = get_runtime("onnxruntime").export(backend.model, folder / "model.onnx", info=backend.info)
    crafted = folder / "crafted.pt2"
    with zipfile.ZipFile(crafted, "w") as z:
        z.writestr("package/archive_format", "pt2")
        z.writestr("package/data/aotinductor/batch1/batch1.so", b"\x7fELF not really")
    return {"checkpoint": ckpt, "onnx": onnx, "aoti": crafted}


def test_kind_by_content_not_name(files, tmp_path):
    for kind, path in files.items():
        assert identify(path) == kind
        renamed = tmp_path / ("x.bin" if kind != "aoti" else "y.bin")
        shutil.copyfile(path, renamed)
        assert identify(renamed) == kind  # a suffix no kind uses: known by content
    (tmp_path / "notes.pth").write_text('{"not": "a model"}')
    with pytest.raises(ValueError, match="not a model file this project reads"):
        identify(tmp_path / "notes.pth")
    with pytest.raises(ValueError, match="is a folder"):
        identify(tmp_path)


@pytest.mark.parametrize("kind, name, says", [
    ("onnx", "model.pth", r"is an ONNX model by its content, but its name says a PyTorch checkpoint.*rename it to "
                          r"model\.onnx"),
    ("checkpoint", "model.pt2", r"is a PyTorch checkpoint or weights file by its content, but its name says an "
                                r"AOTInductor package.*rename it to model\.pth"),
    ("checkpoint", "model.onnx", r"is a PyTorch checkpoint.*rename it to model\.pth"),
])
def test_renamed_files_are_one_line_errors(files, tmp_path, monkeypatch, capsys, kind, name, says):
    path = tmp_path / name
    shutil.copyfile(files[kind], path)
    with pytest.raises(ValueError, match=says):
        load_backend(path)
    code, err = _cli("test", ["--checkpoint", path, "--data-root", COCO_MINI], monkeypatch, capsys)
    assert code == 2 and err.count("\n") == 1 and "weights_only" not in err and re.search(says, err)


def test_code_bearing_package_needs_consent(files, monkeypatch, capsys, tmp_path):
    import torch._inductor.package as package

    def must_not_run(*args, **kwargs):
        raise AssertionError("the package's code was loaded without --trust-code")

    monkeypatch.setattr(package, "load_package", must_not_run)
    path = files["aoti"]
    for call in (lambda: load_backend(path), lambda: PoseEstimator.from_checkpoint(path),
                 lambda: load_backend(path, "compiled")):
        with pytest.raises(ValueError, match="runs the native code inside it.*--trust-code"):
            call()
    for tool in ("test", "demo"):
        argv = ["--checkpoint", path, "--data-root", COCO_MINI] if tool == "test" else \
            ["--checkpoint", path, "--input", COCO_MINI / "val2017", "--output", tmp_path / "demo"]
        code, err = _cli(tool, argv, monkeypatch, capsys)
        assert code == 2 and err.count("\n") == 1 and "--trust-code" in err
    monkeypatch.undo()
    with pytest.raises(ValueError, match="cannot load .* as an AOTInductor package"):  # consent given: it loads
        load_backend(path, trust_code=True)


def test_export_refuses_a_suffix_of_another_format(files, tmp_path, monkeypatch, capsys):
    for name in ("model.pth", "model.txt", "model"):
        code, err = _cli("export", ["--checkpoint", files["checkpoint"], "--output", tmp_path / name],
                         monkeypatch, capsys)
        assert code == 2 and err.count("\n") == 1 and ".onnx" in err and ".pt2" in err
    code, err = _cli("export", ["--checkpoint", files["onnx"], "--output", tmp_path / "again.onnx"],
                     monkeypatch, capsys)
    assert code == 2 and "already an export" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_migration_of_older_checkpoints(tmp_path, untrained_checkpoint):
    """The committed checkpoint (format 1: model + config only), the minimal one of conftest and one as main's
    tools/train.py wrote them before this module (format 1 with metadata and optimiser state) all read, run and
    write back in the current format with the same weights; a newer format is refused."""
    committed = read_checkpoint(TRAINED_CHECKPOINT)
    assert committed.version == 1 and committed.metadata.is_coco_person and not committed.has_training_state
    minimal = read_checkpoint(untrained_checkpoint)
    assert minimal.version == 1 and minimal.epoch == 0
    cfg = load_config(ROOT / "configs" / "synthetic_bird.yaml")
    bird = DatasetMeta(keypoint_names=("beak", "head", "left_wing", "right_wing", "tail"),
                       flip_index=(0, 1, 3, 2, 4), category_id=16, category_name="bird")
    model = build_model(cfg.model, 5)
    optimizer = torch.optim.Adam(model.parameters())
    old = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": {"last_epoch": 3},
           "scaler": None, "epoch": 3, "best_metric": 0.5, "best_metric_name": "AP", "config": config_to_dict(cfg),
           "metadata": bird.to_dict()}
    torch.save(old, tmp_path / "main_format.pth")
    for path in (TRAINED_CHECKPOINT, untrained_checkpoint, tmp_path / "main_format.pth"):
        ckpt = read_checkpoint(path)
        write_checkpoint(ckpt, tmp_path / "migrated.pth")
        again = read_checkpoint(tmp_path / "migrated.pth")
        assert again.version == FORMAT_VERSION and again.metadata == ckpt.metadata and again.epoch == ckpt.epoch
        assert all(torch.equal(again.weights[k], ckpt.weights[k]) for k in ckpt.weights)
        backend = load_backend(tmp_path / "migrated.pth", device="cpu")
        assert backend(torch.zeros(1, 3, *backend.info.input_size[::-1], dtype=torch.uint8)).isfinite().all()
    assert read_checkpoint(tmp_path / "main_format.pth").has_training_state
    future = {**Checkpoint.to_state(read_checkpoint(untrained_checkpoint)), "format_version": FORMAT_VERSION + 1}
    torch.save(future, tmp_path / "future.pth")
    with pytest.raises(ValueError, match="newer keypoints"):
        read_checkpoint(tmp_path / "future.pth")
    weights = read_state_dict(untrained_checkpoint)  # a checkpoint read as weights: its model's
    assert weights.keys() == minimal.weights.keys()
    torch.save({"optimizer": {"step": 1}}, tmp_path / "not_weights.pth")
    with pytest.raises(ValueError, match="holds no state dict"):
        read_state_dict(tmp_path / "not_weights.pth")


@pytest.mark.parametrize("name", sorted(RUNTIMES))
def test_registry_round_trip(name, tmp_path):
    """Every registered runtime: wrap a live model (benchmarks), export with it when it exports, load the file
    back through load_backend with that runtime, same heatmaps as eager PyTorch. The compiled runtime's compile
    is the slow test in tests/test_backend_compiled.py; here its registration and checkpoint loading."""
    runtime = get_runtime(name)
    if not runtime.available():
        pytest.skip(f"{name}: {', '.join(runtime.requires)} not installed")
    cfg = load_config(ROOT / "configs" / "quickstart.yaml")
    model = build_model(cfg.model).eval()
    info = ModelInfo.from_config(cfg)
    crops = torch.randint(0, 256, (2, 3, 128, 96), dtype=torch.uint8)
    with torch.no_grad():
        reference = model(crops)
    assert set(runtime.reads) <= {"checkpoint", "onnx", "aoti"} and runtime.summary
    if name == "compiled":
        assert runtime.writes == "aoti" and "aoti" in runtime.default_for
        return
    exports = {}

    def exported(kind):
        if kind not in exports:
            exports[kind] = get_runtime("onnxruntime").export(model, tmp_path / "m.onnx", info=info)
        return exports[kind]

    live = runtime.wrap(model, info, threads=2, exported=exported)
    assert (live(crops) - reference).abs().max() < 1e-3
    if runtime.export is not None:
        path = runtime.export(model, tmp_path / f"{name}.onnx", info=info)
        loaded = load_backend(path, name, threads=2)
        assert loaded.name == name and (loaded(crops) - reference).abs().max() < 1e-3


def test_init_from_copies_exactly_the_shared_rows(tmp_path):
    """A person model (17 keypoints) initialises a model of 4 keypoints, three of them COCO names: every tensor
    outside the heatmap layer is the source's, the three shared rows are the source's rows, the new one keeps its
    fresh initialisation."""
    cfg = load_config(ROOT / "configs" / "quickstart.yaml")
    torch.manual_seed(1)
    source_model = build_model(cfg.model, 17)
    source = Checkpoint(weights=source_model.state_dict(), config=config_to_dict(cfg),
                        metadata=DatasetMeta.coco_person())
    names = ("right_eye", "beak", "nose", "left_eye")
    target = DatasetMeta(keypoint_names=names, flip_index=(3, 1, 2, 0), category_id=2, category_name="creature")
    torch.manual_seed(2)
    model = build_model(cfg.model, 4)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    report = init_from_checkpoint(model, source, target, source_name="person.pth",
                                  target_model_config=config_to_dict(cfg)["model"])
    state = model.state_dict()
    assert [(i, j) for i, j, _ in report.copied] == [(0, 2), (2, 0), (3, 1)] and report.new == ["beak"]
    for key in HEATMAP_KEYS:
        for i, j in ((0, 2), (2, 0), (3, 1)):
            assert torch.equal(state[key][i], source.weights[key][j])
        assert torch.equal(state[key][1], fresh[key][1])
    assert all(torch.equal(state[k], source.weights[k]) for k in state if k not in HEATMAP_KEYS)
    other = load_config(ROOT / "configs" / "quickstart.yaml", ["model.light_expansion=3"])
    with pytest.raises(ValueError, match="does not fit the model.*model.light_expansion 2 vs 3"):
        init_from_checkpoint(build_model(other.model, 4), source, target, source_name="person.pth",
                             target_model_config=config_to_dict(other)["model"])


def test_train_init_from_through_the_command_line(tmp_path, monkeypatch, capsys, untrained_checkpoint, files):
    from keypoints.data.synthetic import make_synthetic_dataset

    root = tmp_path / "birds"
    make_synthetic_dataset(root, train_images=6, val_images=2, seed=3, kind="bird")
    base = ["--config", ROOT / "configs" / "synthetic_bird.yaml", "--data-root", root, "--device", "cpu",
            "--no-progress", "--epochs", "1", "--opts", "data.workers=0", "train.max_iters_per_epoch=1",
            "data.batch_size=4", "test.batch_size=8"]
    code, err = _cli("train", ["--output-dir", tmp_path / "ft", "--init-from", files["onnx"], *base], monkeypatch,
                     capsys)
    assert code == 2 and "inference graph, not trainable weights" in err
    code, err = _cli("train", ["--output-dir", tmp_path / "ft", "--init-from", untrained_checkpoint, *base],
                     monkeypatch, capsys)
    assert code == 0, err
    ckpt = read_checkpoint(tmp_path / "ft" / "last.pth")
    assert ckpt.init_from["path"] == str(untrained_checkpoint) and ckpt.init_from["new"] == list(
        ckpt.metadata.keypoint_names)  # no bird keypoint is a person keypoint: all rows new, the rest copied
    assert ckpt.cfg.train.init_from == str(untrained_checkpoint) and ckpt.epoch == 1
    assert "0 keypoints copied by name, 5 new" in (tmp_path / "ft" / "train.log").read_text()
    code, err = _cli("train", ["--output-dir", tmp_path / "ft", "--resume", "--init-from", untrained_checkpoint,
                               *base], monkeypatch, capsys)
    assert code == 2 and "exclude each other" in err


def test_one_trainer_per_run_folder(tmp_path):
    with RunLock(tmp_path):
        assert "pid" in (tmp_path / ".train.lock").read_text()
        with pytest.raises(ValueError, match="in use by another training process .*pid"):
            RunLock(tmp_path).acquire()
    assert not (tmp_path / ".train.lock").exists()
    with RunLock(tmp_path):  # released: the next one gets it
        pass


def test_no_torch_load_outside_the_owner():
    offenders = [str(p.relative_to(ROOT)) for folder in ("keypoints", "tools") for p in (ROOT / folder).rglob("*.py")
                 if "torch.load(" in p.read_text() and p.name != "modelfile.py"]
    assert offenders == []


def test_a_new_run_never_replaces_the_files_it_reads(tmp_path, monkeypatch, capsys, untrained_checkpoint):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copyfile(ROOT / "configs" / "quickstart.yaml", run / "config.yaml")
    shutil.copyfile(untrained_checkpoint, run / "best.pth")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    for flag, path in (("--config", run / "config.yaml"), ("--init-from", run / "best.pth")):
        argv = ["--output-dir", run, "--overwrite", "--device", "cpu", flag, path]
        if flag == "--init-from":
            argv += ["--config", ROOT / "configs" / "quickstart.yaml"]
        code, err = _cli("train", argv, monkeypatch, capsys)
        assert code == 2 and err.count("\n") == 1 and "is a file this run writes" in err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
