import pytest

from keypoints.config import (Config, ModelConfig, apply_overrides, config_from_dict, config_to_dict, dump_config,
                              load_config, save_config)
from conftest import ROOT


def test_defaults_match_the_spec():
    cfg = Config()
    assert cfg.data.input_size == (192, 256) and cfg.data.heatmap_size == (48, 64) and cfg.data.sigma == 2.0
    assert cfg.model.act == "dyrelu_c" and cfg.model.se is False
    assert cfg.model.dyrelu.reduction == 4 and cfg.model.dyrelu.tau == 10.0
    assert cfg.train.milestones == (170, 200) and cfg.train.epochs == 210
    assert cfg.test.oks_nms_thr == 0.9 and cfg.test.kpt_score_thr == 0.2


def test_yaml_overrides_and_base_chain(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("model:\n  backbone: mobilenet_v3_small\ntrain:\n  lr: 1.0e-3\n")
    child = tmp_path / "child.yaml"
    child.write_text("_base_: base.yaml\nmodel:\n  act: relu\n")
    cfg = load_config(child, overrides=["train.epochs=3", "data.input_size=[96,128]", "train.lr=2e-3"])
    assert cfg.model.backbone == "mobilenet_v3_small" and cfg.model.act == "relu"
    assert cfg.train.epochs == 3 and cfg.train.lr == 2e-3 and cfg.data.input_size == (96, 128)
    assert cfg.model.head == ModelConfig().head  # untouched keys keep defaults


def test_save_and_reload_round_trip(tmp_path):
    cfg = load_config(ROOT / "configs/quickstart.yaml", overrides=["model.dyrelu.tau=5"])
    save_config(cfg, tmp_path / "cfg.yaml")
    assert load_config(tmp_path / "cfg.yaml") == cfg
    assert config_from_dict(config_to_dict(cfg)) == cfg
    assert "dyrelu" in dump_config(cfg)


@pytest.mark.parametrize("override, message", [
    ("train.lrr=1", "unknown config key 'train.lrr'; valid keys in 'train': epochs, optimizer, lr"),
    ("nope.x=1", "unknown config key 'nope'"),
    ("train.epochs=1.5", "'train.epochs' expects an integer"),
    ("train.channels_last=yes please", "'train.channels_last' expects true/false"),
    ("data.input_size=[1,2,3]", "'data.input_size' expects 2 values"),
    ("model.act=[1]", "'model.act' expects a string"),
    ("train", "must look like section.key=value"),
])
def test_bad_keys_and_types_fail_with_valid_keys(override, message):
    with pytest.raises(ValueError, match=None) as err:
        load_config(None, overrides=[override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_every_shipped_config_loads():
    files = sorted(f for f in (ROOT / "configs").rglob("*.yaml") if "sweeps" not in f.parts)  # sweeps: tools/ablate.py
    assert len(files) >= 8
    for f in files:
        load_config(f)


@pytest.mark.parametrize("override, message", [
    ("data.workers=-1", "data.workers"), ("data.batch_size=0", "at least 1"), ("aug.flip_prob=1.5", "a probability"),
    ("train.lr=0", "positive"), ("data.input_size=[0,256]", "positive"), ("aug.scale_range=[1.2,0.8]", "low <= high"),
    ("test.oks_nms_thr=2", "an OKS"),
])
def test_out_of_range_values_fail_at_once(override, message):
    with pytest.raises(ValueError, match=message) as info:
        load_config(None, [override])
    assert "\n" not in str(info.value)


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ValueError, match="must hold a mapping"):
        load_config(bad)
    bad.write_text("model: 3\n")
    with pytest.raises(ValueError, match="'model' is a section"):
        load_config(bad)


def test_apply_overrides_creates_nested_keys():
    assert apply_overrides({}, ["a.b.c=1"]) == {"a": {"b": {"c": 1}}}
