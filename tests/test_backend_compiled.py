"""Compiled backend (keypoints.backends.compiled): construction from an in-memory model and from a checkpoint, the
dispatch of load_backend, clear errors, and (slow: inductor compiles C++ on 2 cores) parity of torch.compile and of
an AOTInductor package with the eager model on real-valued heatmaps, batch 1 and several batch sizes."""
from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

from keypoints.backends import BACKENDS, ModelInfo, load_backend
from keypoints.backends.compiled import AotBackend, CompiledBackend, export_compiled, plan_batches
from keypoints.config import load_config
from keypoints.models import DyReLU, build_model
from keypoints.models.fused import FusedDyReLU
from conftest import ROOT
from test_fused import TOL, trained_like


@pytest.fixture(scope="module")
def quick():
    cfg = load_config(ROOT / "configs" / "quickstart.yaml")
    return trained_like(build_model(cfg.model)), ModelInfo.from_config(cfg)


def test_construction_is_lazy_and_leaves_the_model_alone(quick):
    model, info = quick
    backend = CompiledBackend(model, info, threads=2)  # torch.compile compiles on the first call, not here
    assert backend.name == "compiled" and "compiled" in BACKENDS
    assert any(isinstance(m, FusedDyReLU) for m in backend.network.modules())
    assert any(isinstance(m, DyReLU) for m in model.modules())  # fused copy; the live model keeps its modules
    assert backend.describe()["fused"] is True
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        CompiledBackend(model, info, threads=0)


def test_dispatch_and_errors(tmp_path, untrained_checkpoint):
    with pytest.raises(FileNotFoundError, match="model file not found"):
        load_backend(tmp_path / "missing.pt2")
    (tmp_path / "junk.pt2").write_bytes(b"not a package")
    with pytest.raises(ValueError, match="not a model file this project reads"):
        load_backend(tmp_path / "junk.pt2", "compiled")
    with pytest.raises(ValueError, match=r"must be named \*\.pt2|named \*\.pt2"):
        export_compiled(torch.nn.Identity(), tmp_path / "m.pt", info=ModelInfo((96, 128), (24, 32), tuple(range(17))))
    backend = load_backend(untrained_checkpoint, "compiled", device="cpu", threads=2)
    assert isinstance(backend, CompiledBackend) and backend.info.input_size == (96, 128)


@pytest.mark.slow
def test_torch_compile_parity(quick):
    model, info = quick
    backend = CompiledBackend(model, info, threads=2, dynamic=True)
    crops = torch.randint(0, 256, (4, 3, 128, 96), dtype=torch.uint8)
    with torch.no_grad():
        reference = model(crops)
    counters.clear()
    for n in (4, 3, 1):  # one dynamic-batch graph for n >= 2, batch 1 specialised
        assert (backend(crops[:n]) - reference[:n]).abs().max() < TOL
    # frozen: the convolutions' weights were pre-packed for oneDNN (not the case when freezing is only passed in
    # torch.compile's options)
    assert counters["inductor"]["mkldnn_conv_weight_pack_matcher_count"] > 0


@pytest.mark.slow
def test_aot_package_parity(quick, tmp_path):
    model, info = quick
    path = export_compiled(model, tmp_path / "quick.pt2", info=info, batch_sizes=(1, 4))
    backend = load_backend(path, trust_code=True)
    assert isinstance(backend, AotBackend) and backend.info == info and backend.sizes == (1, 4)
    crops = torch.randint(0, 256, (7, 3, 128, 96), dtype=torch.uint8)
    with torch.no_grad():
        reference = model(crops)
    for n in (1, 3, 4, 7, 1):  # 3: padded to 4; 7: 4 + 3 padded to 4
        assert (backend(crops[:n]) - reference[:n]).abs().max() < TOL


def test_plan_batches():
    assert plan_batches(1, (1, 8)) == [(1, 1)]
    assert plan_batches(6, (1, 8)) == [(6, 8)]  # padding wastes at most half
    assert plan_batches(3, (1, 8)) == [(1, 1)] * 3
    assert plan_batches(19, (1, 2, 4, 8)) == [(8, 8), (8, 8), (3, 4)]
    assert plan_batches(5, (4,)) == [(4, 4), (1, 4)]
