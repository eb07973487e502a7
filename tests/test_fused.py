"""Inference form of the network (keypoints.models.fused): exact at every activation site of the Large and Small
models (DY-ReLU A/B/C, light and deconv heads, spatial BN, batch 1 and 8, NCHW and channels_last), the original
model untouched, the ONNX export of the fused graph, and the same keypoints and COCO AP on real coco_mini crops."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from keypoints.backends import ModelInfo, TorchBackend
from keypoints.config import load_config
from keypoints.data import build_dataloader, build_dataset
from keypoints.engine import evaluate
from keypoints.evaluation import CocoKeypointEvaluator
from keypoints.inference import TopDownInference
from keypoints.models import DyReLU, build_model, load_pose_checkpoint
from keypoints.models.fused import FusedConvAct, FusedDyReLU, fold_batchnorm, fuse_for_inference
from conftest import COCO_MINI, ROOT, TRAINED_CHECKPOINT

TOL = 1e-4


def trained_like(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BatchNorm statistics and affine parameters (and spatial BN ones), a larger final layer: activations
    and heatmaps of O(1), as after training, so that the tolerances mean something."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    nn.init.normal_(model.head.final.weight, std=0.3)
    return model.eval()


def _model(backbone: str, variant: str, head: str = "light", spatial_bn: bool = False) -> nn.Module:
    act = f"dyrelu_{variant.lower()}" if variant != "relu" else "relu"
    cfg = load_config(None, [f"model.backbone=mobilenet_v3_{backbone}", f"model.act={act}", f"model.head_act={act}",
                             f"model.head={head}", f"model.dyrelu.spatial_bn={spatial_bn}"])
    return trained_like(build_model(cfg.model))


def _site_errors(model: nn.Module, fused: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Max |difference| of every fused site against the original modules it replaces, both fed the original
    model's input to that site (so errors do not accumulate from site to site)."""
    sites = {name: m for name, m in fused.named_modules() if isinstance(m, FusedConvAct)}
    originals = dict(model.named_modules())
    inputs, outputs, hooks = {}, {}, []
    for name, site in sites.items():
        hooks.append(originals[site.source[0]].register_forward_hook(
            lambda m, i, o, key=name: inputs.__setitem__(key, i[0])))
        hooks.append(originals[site.source[-1]].register_forward_hook(
            lambda m, i, o, key=name: outputs.__setitem__(key, o)))
    with torch.no_grad():
        model(x)
        errors = {name: (site(inputs[name]) - outputs[name]).abs().max().item() for name, site in sites.items()}
    for h in hooks:
        h.remove()
    return errors


@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("variant", ["A", "B", "C"])
@pytest.mark.parametrize("backbone", ["large", "small"])
def test_every_site_exact(backbone, variant, batch):
    model = _model(backbone, variant)
    fused = fuse_for_inference(model)
    x = torch.randint(0, 256, (batch, 3, 96, 64), dtype=torch.uint8)
    errors = _site_errors(model, fused, x)
    dyrelu_sites = [m for m in fused.modules() if isinstance(m, FusedConvAct) and isinstance(m.act, FusedDyReLU)]
    assert len(dyrelu_sites) == sum(isinstance(m, DyReLU) for m in model.modules())  # every DY-ReLU is rewritten
    assert sum(m.reads_input for m in dyrelu_sites) >= len(dyrelu_sites) // 3  # the 1x1 sites read the conv input
    assert not any(isinstance(m, (DyReLU, nn.BatchNorm2d)) for m in fused.modules())
    assert max(errors.values()) < TOL, sorted(errors.items(), key=lambda kv: -kv[1])[:3]
    with torch.no_grad():
        reference = model(x)
        assert reference.abs().max() > 0.1
        assert (fused(x) - reference).abs().max() < TOL


@pytest.mark.parametrize("head, spatial_bn", [("deconv", False), ("light", True)])
def test_deconv_head_and_spatial_bn_channels_last(head, spatial_bn):
    model = _model("small", "C", head=head, spatial_bn=spatial_bn)
    for m in model.modules():  # spatial BN with non-trivial statistics: its scale folds, its shift drops out
        if isinstance(m, DyReLU) and m.spatial_bn is not None:
            m.spatial_bn.running_mean.fill_(0.3)
            m.spatial_bn.running_var.fill_(2.0)
            m.spatial_bn.weight.data.fill_(1.5)
    fused = fuse_for_inference(model).to(memory_format=torch.channels_last)
    x = torch.randint(0, 256, (2, 3, 128, 96), dtype=torch.uint8).contiguous(memory_format=torch.channels_last)
    assert max(_site_errors(model, fused, x).values()) < TOL
    if head == "deconv":  # the deconv head's ConvTranspose2d + BN + DY-ReLU runs became sites
        assert [m.source for m in fused.head.deconv if isinstance(m, FusedConvAct)][0] == (
            "head.deconv.0", "head.deconv.1", "head.deconv.2")
    with torch.no_grad():
        out = fused(x)
        assert (out - model(x)).abs().max() < TOL


@pytest.mark.parametrize("variant", ["A", "C"])
def test_graph_form_for_the_compiler_exact(variant):
    """The form torch.compile / torch.export hand to inductor (hyper-function layers as broadcast products summed
    over the input features, the elementwise pass functional), captured by dynamo and run as a Python graph (no C++
    compile): the same function, and no BLAS linear left in the hyper functions."""
    model = _model("small", variant)
    fused = fuse_for_inference(model)
    graphs = []

    def capture(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    compiled = torch.compile(fused, backend=capture, fullgraph=True)
    x = torch.randint(0, 256, (2, 3, 96, 64), dtype=torch.uint8)
    with torch.no_grad():
        assert (compiled(x) - model(x)).abs().max() < TOL
    targets = [n.target for gm in graphs for n in gm.graph.nodes if n.op == "call_function"]
    sites = sum(isinstance(m, FusedDyReLU) for m in fused.modules())
    assert sites > 0 and F.linear not in targets and targets.count(torch.sigmoid) == sites


def test_relu_twin_and_original_untouched():
    model = _model("small", "relu").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused = fuse_for_inference(model)
    assert model.training and not fused.training  # the live model keeps training mode and its modules
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert not any(p.requires_grad for p in fused.parameters())
    x = torch.randint(0, 256, (2, 3, 128, 96), dtype=torch.uint8)
    with torch.no_grad():
        assert (fused(x) - model.eval()(x)).abs().max() < TOL


def test_fold_batchnorm_grouped_transposed_conv():
    conv, bn = nn.ConvTranspose2d(8, 6, 4, 2, 1, groups=2, bias=True), nn.BatchNorm2d(6)
    trained_like(nn.ModuleDict({"head": nn.ModuleDict({"final": nn.Conv2d(1, 1, 1)}), "bn": bn}))
    x = torch.randn(2, 8, 5, 4)
    with torch.no_grad():
        assert (fold_batchnorm(conv, bn)(x) - bn(conv(x))).abs().max() < 1e-5
    with pytest.raises(ValueError, match="needs a Conv2d or ConvTranspose2d"):
        fold_batchnorm(nn.Linear(2, 2), bn)


def test_onnx_export_of_the_fused_graph(tmp_path):
    pytest.importorskip("onnxruntime")
    from keypoints.backends.onnx import OnnxBackend, export_onnx

    cfg = load_config(ROOT / "configs" / "quickstart.yaml")
    model = trained_like(build_model(cfg.model))
    path = export_onnx(fuse_for_inference(model), tmp_path / "fused.onnx", info=ModelInfo.from_config(cfg))
    backend = OnnxBackend(path, threads=2)
    x = torch.randint(0, 256, (3, 3, 128, 96), dtype=torch.uint8)
    with torch.no_grad():
        reference = model(x)
    assert (backend(x) - reference).abs().max() < TOL


def test_openvino_backend_runs_the_fused_onnx_file(tmp_path):
    pytest.importorskip("openvino")
    from keypoints.backends import load_backend
    from keypoints.backends.onnx import export_onnx

    cfg = load_config(ROOT / "configs" / "quickstart.yaml")
    model = trained_like(build_model(cfg.model))
    path = export_onnx(model, tmp_path / "fused.onnx", info=ModelInfo.from_config(cfg))
    backend = load_backend(path, "openvino", threads=2)
    assert backend.name == "openvino" and backend.info.input_size == (96, 128)
    x = torch.randint(0, 256, (3, 3, 128, 96), dtype=torch.uint8)
    with torch.no_grad():
        reference = model(x)
    for n in (3, 1, 3):  # one static-shape compile per batch size, reused
        assert (backend(x[:n]) - reference[:n]).abs().max() < TOL
    assert sorted(backend.requests) == [1, 3]


SIGNAL_AFTER_TWO_BACKENDS = """
import signal, subprocess, sys, torch
from keypoints.backends import load_backend
crop = torch.zeros(1, 3, 128, 96, dtype=torch.uint8)
first = load_backend(sys.argv[1], "openvino", threads=1)
first(crop)  # compiles: OpenVINO sets a signal stack of its own here
second = load_backend(sys.argv[1], "openvino", threads=1)
second(crop)
del first  # destroyed in the order they were made
del second
signal.signal(signal.SIGCHLD, lambda *args: None)  # a Python handler (the DataLoader sets one like it)
subprocess.run(["true"])  # the child's exit delivers SIGCHLD on the thread's signal stack
print("alive")
"""


def test_signals_still_handled_after_two_openvino_backends(tmp_path):
    # OpenVINO left the thread with a freed signal stack (with an earlier one set: faulthandler, as under pytest):
    # the test suite died of SIGSEGV on the next SIGCHLD.
    pytest.importorskip("openvino")
    import subprocess
    import sys

    from keypoints.backends.onnx import export_onnx

    cfg = load_config(ROOT / "configs" / "quickstart.yaml")
    path = export_onnx(build_model(cfg.model).eval(), tmp_path / "m.onnx", info=ModelInfo.from_config(cfg))
    proc = subprocess.run([sys.executable, "-X", "faulthandler", "-c", SIGNAL_AFTER_TWO_BACKENDS, str(path)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.strip() == "alive", (proc.returncode, proc.stderr[-1000:])


def test_same_keypoints_and_ap_on_coco_mini():
    """The trained quickstart checkpoint (AP 0.756 on coco_mini val) and its fused form through the one test-time
    path (crop, flip test, decode) and the COCO evaluator: the same heatmaps on real crops, the same keypoints and
    the same AP."""
    model, cfg, metadata = load_pose_checkpoint(str(TRAINED_CHECKPOINT))
    cfg.data.root, cfg.data.workers, cfg.test.batch_size = str(COCO_MINI), 0, 16
    info = ModelInfo.from_config(cfg, metadata=metadata)
    dataset = build_dataset(cfg, "val")
    results = []
    for net in (model, fuse_for_inference(model)):
        inference = TopDownInference.from_config(TorchBackend(net, info, "cpu"), cfg)
        evaluator = CocoKeypointEvaluator(dataset.ann_file, box_source=dataset.box_source)
        batch = next(iter(build_dataloader(dataset, cfg, train=False)))
        keypoints, heatmaps = inference.predict_crops(batch["image"], batch["center"], batch["scale"])
        metrics = evaluate(inference, build_dataloader(dataset, cfg, train=False), evaluator, progress=False)
        results.append((keypoints, heatmaps, metrics))
    (kp_ref, hm_ref, ap_ref), (kp, hm, ap) = results
    assert hm_ref.abs().max() > 0.3 and (hm - hm_ref).abs().max() < TOL
    assert (kp[..., :2] - kp_ref[..., :2]).abs().max() < 1e-2  # image pixels
    assert ap_ref["num_instances"] == 40 and ap_ref["AP"] == pytest.approx(0.756, abs=5e-4)
    assert abs(ap["AP"] - ap_ref["AP"]) <= 1e-3 and abs(ap["AR"] - ap_ref["AR"]) <= 1e-3
