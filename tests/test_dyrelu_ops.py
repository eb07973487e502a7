"""DY-ReLU elementwise implementations: exact gradients, agreement with the reference graph, memory
format, autocast, torch.compile, ONNX export, and the Triton kernels under Triton's CPU interpreter."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from keypoints.models import dyrelu_ops
from keypoints.models.dyrelu import DyReLU
from keypoints.models.dyrelu_ops import DyReLUFunction, dyrelu_apply, dyrelu_reference, resolve_impl

CHANNELS_LAST = torch.channels_last


def _inputs(k: int = 2, pi: bool = True, shape=(2, 5, 4, 3), dtype=torch.float32, channels_last: bool = False,
            seed: int = 0):
    """Generic inputs (no ties between pieces), all requiring grad; pi is None when ``pi`` is False."""
    gen = torch.Generator().manual_seed(seed)
    n, c, h, w = shape
    x = torch.randn(shape, generator=gen, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=CHANNELS_LAST)
    a = torch.randn(n, c, k, generator=gen, dtype=dtype)
    b = torch.randn(n, c, k, generator=gen, dtype=dtype)
    p = torch.rand(n, 1, h, w, generator=gen, dtype=dtype) + 0.1 if pi else None
    return [t.requires_grad_() if t is not None else None for t in (x, a, b, p)]


def _grads(impl: str, x, a, b, pi, grad):
    y = dyrelu_apply(x, a, b, pi, impl=impl)
    inputs = [t for t in (x, a, b, pi) if t is not None]
    return (y, *torch.autograd.grad(y, inputs, grad))


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("with_pi", [True, False])
def test_gradcheck_float64(k: int, with_pi: bool) -> None:
    x, a, b, pi = _inputs(k, with_pi, shape=(2, 3, 4, 5), dtype=torch.float64)
    assert torch.autograd.gradcheck(DyReLUFunction.apply, (x, a, b, pi))


def test_gradcheck_float64_chunked(monkeypatch: pytest.MonkeyPatch) -> None:
    # The CPU path works on a few samples at a time; force several chunks.
    monkeypatch.setattr(dyrelu_ops, "_CHUNK_ELEMENTS", 1)
    x, a, b, pi = _inputs(2, True, shape=(3, 3, 4, 5), dtype=torch.float64, channels_last=True)
    assert torch.autograd.gradcheck(DyReLUFunction.apply, (x, a, b, pi))


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("with_pi", [True, False])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("chunk", [1 << 20, 100])
def test_matches_reference_float32(k: int, with_pi: bool, channels_last: bool, chunk: int,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dyrelu_ops, "_CHUNK_ELEMENTS", chunk)
    x, a, b, pi = _inputs(k, with_pi, shape=(3, 7, 9, 6), channels_last=channels_last)
    grad = torch.randn(x.shape)
    expected = _grads("reference", x, a, b, pi, grad)
    actual = _grads("autograd", x, a, b, pi, grad)
    for e, r in zip(expected, actual):
        torch.testing.assert_close(r, e, rtol=1e-5, atol=1e-5)
    assert actual[0].is_contiguous(memory_format=CHANNELS_LAST) == channels_last
    assert actual[1].is_contiguous(memory_format=CHANNELS_LAST) == channels_last  # dx


def test_tie_goes_to_first_piece() -> None:
    # ReLU at zero residual: pieces x and 0 tie at x = 0; the lean paths route the gradient to piece 0 (slope 1).
    x = torch.tensor([-1.0, 0.0, 2.0]).view(1, 1, 1, 3).requires_grad_()
    a = torch.tensor([[[1.0, 0.0]]], requires_grad=True)
    b = torch.zeros(1, 1, 2, requires_grad=True)
    y = dyrelu_apply(x, a, b, None, impl="autograd")
    y.sum().backward()
    assert x.grad.flatten().tolist() == [0.0, 1.0, 1.0]
    assert a.grad.flatten().tolist() == [2.0, -1.0]  # sum of x where piece 0 / piece 1 wins
    assert b.grad.flatten().tolist() == [2.0, 1.0]


@pytest.mark.parametrize("channels_last", [False, True])
def test_inference_path(channels_last: bool) -> None:
    x, a, b, pi = _inputs(2, True, shape=(3, 6, 5, 4), channels_last=channels_last)
    with torch.no_grad():
        assert resolve_impl("auto", x, needs_grad=False) == "inference"
        y = dyrelu_apply(x, a, b, pi, impl="auto")
        torch.testing.assert_close(y, dyrelu_reference(x, a, b, pi), rtol=1e-6, atol=1e-6)
    assert y.is_contiguous(memory_format=CHANNELS_LAST) == channels_last


def test_dispatch() -> None:
    x = torch.randn(1, 2, 3, 3)
    assert resolve_impl("auto", x, needs_grad=True) == "autograd"
    assert resolve_impl("reference", x, needs_grad=True) == "reference"
    with pytest.raises(ValueError, match="choose one of"):
        resolve_impl("fast", x, needs_grad=True)
    if os.environ.get("TRITON_INTERPRET") != "1":
        with pytest.raises(ValueError, match="CUDA"):
            resolve_impl("triton", x, needs_grad=True)
    with pytest.raises(ValueError, match="impl"):
        DyReLU(4, impl="fast")


@pytest.mark.parametrize("variant", ["A", "B", "C"])
def test_module_impls_agree(variant: str) -> None:
    torch.manual_seed(0)
    ref = DyReLU(8, variant=variant, impl="reference")
    lean = DyReLU(8, variant=variant, impl="auto")
    lean.load_state_dict(ref.state_dict())
    x = torch.randn(2, 8, 6, 5).contiguous(memory_format=CHANNELS_LAST)
    outs = []
    for m in (ref, lean):
        xi = x.clone().requires_grad_()
        y = m(xi)
        (y * torch.arange(y.numel()).view_as(y).sin()).sum().backward()
        outs.append((y, xi.grad, *[p.grad for p in m.parameters()]))
    for e, r in zip(*outs):
        torch.testing.assert_close(r, e, rtol=1e-5, atol=1e-6)
    assert outs[1][0].is_contiguous(memory_format=CHANNELS_LAST)


def test_bf16_autocast_cpu() -> None:
    torch.manual_seed(0)
    ref = DyReLU(8, impl="reference")
    lean = DyReLU(8, impl="auto")
    lean.load_state_dict(ref.state_dict())
    x = torch.randn(2, 8, 6, 5).contiguous(memory_format=CHANNELS_LAST)
    expected = ref(x)  # float32
    xi = x.clone().bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = lean(xi)
    assert y.dtype == torch.bfloat16 and y.is_contiguous(memory_format=CHANNELS_LAST)
    torch.testing.assert_close(y.float(), expected, rtol=2e-2, atol=2e-2)
    y.float().square().sum().backward()
    assert xi.grad.dtype == torch.bfloat16 and torch.isfinite(xi.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in lean.parameters())


def test_torch_compile_auto() -> None:
    torch.manual_seed(0)
    ref = DyReLU(8, impl="reference")
    lean = DyReLU(8, impl="auto")
    lean.load_state_dict(ref.state_dict())
    compiled = torch.compile(lean)
    x = torch.randn(2, 8, 6, 5)
    grads = []
    for m in (ref, compiled):
        xi = x.clone().requires_grad_()
        y = m(xi)
        y.square().sum().backward()
        grads.append((y, xi.grad))
    for e, r in zip(*grads):
        torch.testing.assert_close(r, e, rtol=1e-5, atol=1e-6)


def test_ddp_single_process(tmp_path: Path) -> None:
    # Nothing DDP-specific: the lean path is an ordinary autograd node; gradients reach the hyper function.
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        ref = DyReLU(8, impl="reference")
        lean = DyReLU(8, impl="auto")
        lean.load_state_dict(ref.state_dict())
        ddp = DistributedDataParallel(lean)
        x = torch.randn(2, 8, 6, 5)
        ref(x).square().sum().backward()
        ddp(x).square().sum().backward()
        for p, q in zip(ref.parameters(), lean.parameters()):
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-6)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_onnx_export_uses_reference(dynamo: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")

    def fail(*args, **kwargs):
        raise AssertionError("a lean DyReLU path ran during ONNX export")

    monkeypatch.setattr(dyrelu_ops, "dyrelu_forward", fail)
    monkeypatch.setattr(DyReLUFunction, "apply", fail)
    torch.manual_seed(0)
    m = DyReLU(8, impl="auto").eval()
    x = torch.randn(2, 8, 6, 5)
    path = tmp_path / "dyrelu.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(m, (x,), str(path), dynamo=dynamo)
    graph = onnx.load(str(path)).graph
    assert "Max" in {n.op_type for n in graph.node} and all(n.domain in ("", "ai.onnx") for n in graph.node)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        expected = dyrelu_reference(x, *m.coefficients(x), m.spatial_attention(x))
    torch.testing.assert_close(torch.from_numpy(out), expected, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- Triton, interpreted on the CPU


def _triton_interpreter_check() -> None:
    """Run in a subprocess with TRITON_INTERPRET=1: kernels vs reference, both layouts, odd sizes."""
    torch.manual_seed(0)
    from keypoints.models.dyrelu_triton import dyrelu_backward_triton
    # (shape, channels_last): odd sizes mask both tile axes; the larger ones split the positions
    # over several programs, each looping over several tiles (partial sums folded by the second pass).
    cases = [((2, 5, 3, 7), False), ((2, 5, 3, 7), True), ((2, 37, 19, 23), False), ((2, 37, 19, 23), True),
             ((1, 130, 4, 5), True), ((3, 1, 2, 1), False)]
    for (shape, channels_last) in cases:
        for k, with_pi in ((2, True), (2, False), (3, True)):
            x, a, b, pi = _inputs(k, with_pi, shape=shape, channels_last=channels_last, seed=sum(shape) + k)
            grad = torch.randn(shape)
            expected = _grads("reference", x, a, b, pi, grad)
            actual = _grads("triton", x, a, b, pi, grad)
            for e, r in zip(expected, actual):
                torch.testing.assert_close(r, e, rtol=1e-5, atol=1e-5)
            assert actual[0].stride() == x.stride() and actual[1].stride() == x.stride()
    # Mismatched gradient layout is accepted.
    x, a, b, pi = _inputs(2, True, shape=(2, 6, 5, 4), channels_last=True)
    grad = torch.randn(x.shape)  # NCHW
    ref = torch.autograd.grad(dyrelu_reference(x, a, b, pi), (x, a, b, pi), grad)
    for e, r in zip(ref, dyrelu_backward_triton(grad, x.detach(), a.detach(), b.detach(), pi.detach())):
        torch.testing.assert_close(r, e, rtol=1e-5, atol=1e-5)
    # bf16 / fp16 in and out, fp32 math inside: within one rounding of the fp32 result.
    for dtype in (torch.bfloat16, torch.float16):
        x, a, b, pi = _inputs(2, True, shape=(2, 9, 5, 6), channels_last=True)
        low = [t.detach().to(dtype).requires_grad_() for t in (x, a, b, pi)]
        grad = torch.randn(x.shape)
        expected = _grads("reference", *[t.detach().float().requires_grad_() for t in low], grad)
        actual = _grads("triton", *low, grad.to(dtype))
        for e, r in zip(expected, actual):
            assert r.dtype == dtype
            torch.testing.assert_close(r.float(), e, rtol=2e-2, atol=2e-2)
    # The custom op's registrations (schema, fake tensor, autograd) as torch.compile sees them.
    x, a, b, pi = _inputs(2, True, shape=(2, 6, 5, 4), channels_last=True)
    torch.library.opcheck(torch.ops.keypoints.dyrelu_fused.default, (x, a, b, pi))
    torch.library.opcheck(torch.ops.keypoints.dyrelu_fused.default, (x, a, b, None))
    # The first-use self-check of impl="auto" passes with the real kernels (here interpreted on the CPU).
    for dtype in (torch.float32, torch.bfloat16):
        assert dyrelu_ops.triton_self_check(torch.device("cpu"), dtype)


class _ZeroCoefficientGrads(torch.autograd.Function):
    """Right forward, wrong backward: no gradient reaches a and b (a kernel bug the forward alone would miss)."""

    @staticmethod
    def forward(ctx, x, a, b, pi):
        ctx.save_for_backward(x, a, b, pi)
        return dyrelu_reference(x, a, b, pi)

    @staticmethod
    def backward(ctx, grad):
        x, a, b, pi = ctx.saved_tensors
        dx, _, _, dpi = dyrelu_ops.dyrelu_backward(grad, x, a, b, pi)
        return dx, torch.zeros_like(a), torch.zeros_like(b), dpi


def _raises(x, a, b, pi):
    raise RuntimeError("triton compilation failed\nsecond line of a long compiler log")


BAD_KERNELS = {"raises": _raises, "wrong-forward": lambda x, a, b, pi: dyrelu_reference(x, a, b, pi) * 1.1,
               "wrong-backward": _ZeroCoefficientGrads.apply}


@pytest.mark.parametrize("kernel", BAD_KERNELS, ids=list(BAD_KERNELS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_self_check_rejects_bad_kernels(kernel: str, dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(dyrelu_ops, "_TRITON_VERDICTS", {})
    calls = []

    def fused(*args):
        calls.append(1)
        return BAD_KERNELS[kernel](*args)

    with caplog.at_level("WARNING", logger="keypoints.models.dyrelu_ops"), torch.no_grad():
        assert not dyrelu_ops.triton_self_check(torch.device("cpu"), dtype, fused=fused)
        assert not dyrelu_ops.triton_self_check(torch.device("cpu"), dtype, fused=fused)  # cached: not run again
    assert len(calls) == 1
    (record,) = caplog.records
    assert "\n" not in record.getMessage() and "self-check" in record.getMessage()


def test_triton_self_check_accepts_a_correct_kernel_and_caches_per_dtype(monkeypatch: pytest.MonkeyPatch,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(dyrelu_ops, "_TRITON_VERDICTS", {})
    calls = []

    def fused(*args):
        calls.append(1)
        return DyReLUFunction.apply(*args)  # an independent correct implementation (first-maximum ties)

    with caplog.at_level("WARNING"), torch.inference_mode():  # the check builds its own graph even here
        assert dyrelu_ops.triton_self_check(torch.device("cpu"), torch.float32, fused=fused)
        n = len(calls)
        assert dyrelu_ops.triton_self_check(torch.device("cpu"), torch.float32, fused=fused)
        assert len(calls) == n
        assert dyrelu_ops.triton_self_check(torch.device("cpu"), torch.float16, fused=fused)
        assert len(calls) == 2 * n
    assert not caplog.records


def test_triton_self_check_runs_once_under_torch_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    # On CUDA, resolve_impl("auto") asks for the verdict while torch.compile traces the model: the check runs
    # eagerly (outside the graph) once, and the compiled code follows the verdict.
    monkeypatch.setattr(dyrelu_ops, "_TRITON_VERDICTS", {})
    calls = []

    def fused(*args):
        calls.append(1)
        return _raises(*args)

    monkeypatch.setattr(dyrelu_ops, "dyrelu_fused", fused)
    torch._dynamo.reset()
    f = torch.compile(lambda x: x * 2 if dyrelu_ops._triton_trusted(x) else x * 3, backend="eager")
    x = torch.ones(3)
    assert f(x).tolist() == [3.0] * 3 and f(x).tolist() == [3.0] * 3
    assert len(calls) == 1


def test_triton_kernels_interpreted() -> None:
    pytest.importorskip("triton")
    code = ("import importlib.util, sys; spec = importlib.util.spec_from_file_location('t', sys.argv[1]); "
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); m._triton_interpreter_check()")
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, "-c", code, __file__], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_triton_cuda(dtype: torch.dtype, channels_last: bool) -> None:
    pytest.importorskip("triton")
    x, a, b, pi = [t.detach().cuda().to(dtype).requires_grad_() for t in
                   _inputs(2, True, shape=(4, 72, 33, 17), channels_last=channels_last)]
    grad = torch.randn(x.shape, device="cuda", dtype=dtype)
    assert resolve_impl("auto", x, needs_grad=True) == "triton"
    expected = _grads("reference", *[t.detach().float().requires_grad_() for t in (x, a, b, pi)], grad.float())
    actual = _grads("auto", x, a, b, pi, grad)
    assert dyrelu_ops._TRITON_VERDICTS[(x.device, dtype)]  # the self-check passed on this GPU
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    for e, r in zip(expected, actual):
        torch.testing.assert_close(r.float(), e, rtol=tol, atol=tol * 10)
