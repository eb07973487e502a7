"""MobileNetV3 backbone, pretrained loading, heads and the model builder."""
import pytest
import torch
import torchvision
from torch import nn

from keypoints.config import ModelConfig, load_config
from keypoints.models import DyReLU, build_model, mobilenet_v3_large, mobilenet_v3_small
from keypoints.models.pretrained import load_backbone_weights, resolve_pretrained
from conftest import ROOT

TORCHVISION = {"large": (mobilenet_v3_large, torchvision.models.mobilenet_v3_large, 2_971_952),
               "small": (mobilenet_v3_small, torchvision.models.mobilenet_v3_small, 927_008)}


def _count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("name", ["large", "small"])
def test_original_network_equals_torchvision(name):
    ours, theirs, params = TORCHVISION[name]
    m, t = ours(se=True, act="original").eval(), theirs().features.eval()
    assert _count(m) == _count(t) == params
    m.features.load_state_dict(t.state_dict())  # same keys, same shapes: strict load
    x = torch.randn(1, 3, 128, 96)
    with torch.no_grad():
        torch.testing.assert_close(m(x)[-1], t(x))


@pytest.mark.parametrize("name, channels", [("large", (24, 40, 112, 960)), ("small", (16, 24, 48, 576))])
def test_feature_strides_and_channels(name, channels):
    m = TORCHVISION[name][0](act="relu")
    feats = m(torch.randn(1, 3, 256, 192))
    assert m.out_channels == channels
    assert [f.shape[1] for f in feats] == list(channels)
    assert [(f.shape[2], f.shape[3]) for f in feats] == [(64, 48), (32, 24), (16, 12), (8, 6)]


def test_default_backbone_has_no_se_and_dyrelu_c_everywhere():
    m = mobilenet_v3_large()
    acts = [x for x in m.modules() if isinstance(x, (nn.ReLU, nn.Hardswish, nn.Hardsigmoid, DyReLU))]
    assert acts and all(isinstance(a, DyReLU) and a.variant == "C" for a in acts)
    assert not any("SqueezeExcitation" in type(x).__name__ for x in m.modules())
    # One activation per ReLU/h-swish of the original network: stem, last conv, 2 per block (1 for blocks
    # without an expansion conv).
    original = mobilenet_v3_large(se=True, act="original")
    n_orig = sum(isinstance(x, (nn.ReLU, nn.Hardswish)) for name, x in original.named_modules() if "fc" not in name
                 and not name.endswith("activation"))
    assert len(acts) == n_orig == 2 + 2 * 15 - 1


def test_width_multiplier_makes_channels_divisible_by_8():
    m = mobilenet_v3_small(width_mult=0.5, act="relu")
    assert all(c % 8 == 0 for c in m.out_channels)
    assert m.out_channels == (8, 16, 24, 288)


def _torchvision_state(tmp_path, name="large"):
    state = TORCHVISION[name][1]().state_dict()
    path = tmp_path / f"mnv3_{name}.pth"
    torch.save(state, path)
    return state, path


def test_pretrained_loads_into_the_original_network(tmp_path):
    state, path = _torchvision_state(tmp_path)
    model = build_model(ModelConfig(se=True, act="original", head_act="relu", pretrained=str(path)))
    for k, v in model.backbone.features.state_dict().items():
        torch.testing.assert_close(v, state["features." + k])


def test_pretrained_skips_se_and_keeps_dyrelu_init(tmp_path):
    state, path = _torchvision_state(tmp_path)
    backbone = mobilenet_v3_large()
    act_before = {k: v.clone() for k, v in backbone.state_dict().items() if ".fc1." in k or "spatial" in k}
    report = load_backbone_weights(backbone, torch.load(path, weights_only=True))
    assert any(k.startswith("classifier.") for k in report.skipped)
    assert any(".block.2.fc1." in k for k in report.skipped)  # SE of features.4
    assert report.initialized and all(".fc" in k or "spatial" in k for k in report.initialized)
    assert len(report.loaded) + len(report.skipped) == len(state)
    for k, v in backbone.state_dict().items():
        if "features." + k in state and ".block.2.fc" not in k:
            torch.testing.assert_close(v, state["features." + k])
    for k, v in act_before.items():
        torch.testing.assert_close(backbone.state_dict()[k], v)
    assert "loaded" in report.summary()


def test_pretrained_mismatch_is_a_clear_error(tmp_path):
    _, path = _torchvision_state(tmp_path, "small")
    with pytest.raises(ValueError, match="does not fit the model.*check model.backbone"):
        build_model(ModelConfig(pretrained=str(path)))  # Small weights into Large
    state = torchvision.models.mobilenet_v3_large().state_dict()
    del state["features.1.block.0.0.weight"]
    with pytest.raises(ValueError, match=r"1 missing \(e.g. features.1.block.0.0.weight\)"):
        load_backbone_weights(mobilenet_v3_large(), state)
    state = torchvision.models.mobilenet_v3_large(width_mult=0.75).state_dict()
    with pytest.raises(ValueError, match=r"other shapes \(e.g. \S+: \(48, 16, 1, 1\) vs \(64, 16, 1, 1\)\)"):
        load_backbone_weights(mobilenet_v3_large(), state)
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        build_model(ModelConfig(pretrained=str(tmp_path / "nope.pth")))
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth is not a model file.*a state dict saved with torch.save"):
        build_model(ModelConfig(pretrained=str(tmp_path / "junk.pth")))


def test_pretrained_torchvision_reads_the_hub_cache_only(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError, match="is not in .*copy the file there"):
        resolve_pretrained("torchvision", "mobilenet_v3_large")
    (tmp_path / "checkpoints").mkdir()
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(),
               tmp_path / "checkpoints/mobilenet_v3_small-047dcff4.pth")
    model = build_model(ModelConfig(backbone="mobilenet_v3_small", act="relu", pretrained="torchvision"))
    assert model.backbone.features[0][0].weight.abs().sum() > 0


@pytest.mark.parametrize("head", ["deconv", "light"])
@pytest.mark.parametrize("backbone", ["mobilenet_v3_large", "mobilenet_v3_small"])
def test_model_maps_crops_to_heatmaps(head, backbone):
    model = build_model(ModelConfig(backbone=backbone, head=head))
    images = torch.randint(0, 256, (2, 3, 256, 192), dtype=torch.uint8)
    out = model(images)
    assert out.shape == (2, 17, 64, 48) and out.dtype == torch.float32 and torch.isfinite(out).all()
    out.float().pow(2).mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_deconv_head_init_and_normalisation():
    model = build_model(ModelConfig(backbone="mobilenet_v3_small", head="deconv", head_act="relu", act="relu"))
    deconvs = [m for m in model.head.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert len(deconvs) == 3 and all(m.out_channels == 256 and m.bias is None for m in deconvs)
    assert abs(deconvs[0].weight.std().item() - 0.001) < 2e-4
    # Normalisation is inside the model: uint8 and float pixel inputs give the same output.
    model.eval()
    x = torch.randint(0, 256, (1, 3, 64, 48), dtype=torch.uint8)
    torch.testing.assert_close(model(x), model(x.float()))


@pytest.mark.parametrize("key, value, message", [
    ("backbone", "resnet50", "model.backbone='resnet50' is not valid; choose one of mobilenet_v3_large"),
    ("act", "gelu", "model.act='gelu' is not valid; choose one of relu, hardswish"),
    ("head", "simcc", "model.head='simcc' is not valid; choose one of deconv, light"),
])
def test_build_model_rejects_unknown_names(key, value, message):
    with pytest.raises(ValueError) as err:
        build_model(ModelConfig(**{key: value}))
    assert message in str(err.value)


def test_wrong_input_channels_is_a_clear_error():
    model = build_model(load_config(ROOT / "configs/quickstart.yaml").model)
    with pytest.raises(ValueError, match=r"expects RGB crops \(B, 3, H, W\), got \(1, 1, 128, 96\)"):
        model(torch.zeros(1, 1, 128, 96))


def test_bn_momentum_knob():
    default = build_model(ModelConfig(backbone="mobilenet_v3_small", head="deconv"))
    assert default.backbone.features[0][1].momentum == 0.01 and default.head.deconv[1].momentum == 0.1
    fast = build_model(ModelConfig(backbone="mobilenet_v3_small", bn_momentum=0.1))
    assert {m.momentum for m in fast.modules() if isinstance(m, nn.BatchNorm2d)} == {0.1}
