"""Elementwise part of DY-ReLU: y = pi * max_k(a_k * x + b_k), and its memory-lean implementations.

Shapes: x (B, C, H, W) in any memory format (the output keeps it); a, b (B, C, K), the
per-sample, per-channel slopes and intercepts; pi (B, 1, H, W) the spatial attention of
variant C, or None. ``dyrelu_apply(x, a, b, pi, impl)`` picks the implementation:

- ``reference``: the straightforward PyTorch graph. Autograd keeps K + 1 full-size
  intermediates (the pieces, their maximum) alive until backward. The reference for tests,
  the graph exported to ONNX, and the baseline of ``tools/benchmark.py``.
- ``autograd``: :class:`DyReLUFunction`, a custom autograd function that saves only x, a, b
  and pi (x is kept alive anyway: the hyper function's 1x1 conv saves it) and recomputes the
  winning piece in backward. Vectorised PyTorch ops with a K = 2 fast path; any device.
- ``triton``: fused Triton kernels, one pass forward and one pass backward (reads x and the
  incoming gradient, writes dx, folds the per-channel and per-position reductions; see
  :mod:`keypoints.models.dyrelu_triton`). Registered as the ``torch.library`` custom op
  ``keypoints::dyrelu_fused`` with a fake (meta) function and an autograd formula, so
  ``torch.compile`` keeps it as one opaque kernel. CUDA tensors (or CPU tensors under
  ``TRITON_INTERPRET=1``, for tests), dtypes fp32 / bf16 / fp16 with fp32 math.
- ``auto`` (default): the triton kernels on CUDA when Triton imports, the dtype is supported
  and the kernels passed their self-check on that device and dtype; otherwise ``autograd``
  when a gradient is needed and a cheap forward without a graph (in-place ops, 2 full-size
  allocations fewer than the reference) for inference.

Self-check (``auto`` on CUDA only): the first time a (device, dtype) pair reaches the kernels,
:func:`triton_self_check` runs them forward and backward on two small tensors (NCHW and
channels_last, with and without the attention) against the reference. If they raise (a Triton
or driver problem: compilation, launch) or disagree, one warning line is logged and ``auto``
uses the PyTorch paths on that device and dtype for the rest of the process, so a first GPU run
cannot crash or train wrong because of the kernels. The verdict is cached per (device, dtype);
``impl="triton"`` (asked for explicitly) is not checked, and the CPU never runs it.

Every implementation exports the reference graph during ONNX export
(``torch.onnx.is_in_onnx_export()``, true for both the TorchScript and the dynamo exporter),
so exported models carry only standard operators. DDP needs nothing special: all paths are
ordinary autograd nodes whose gradients flow to the parameters of the hyper function.

Tie-breaking at the kink: the fused paths route the gradient to the first maximal piece, as
``torch.max`` / ``argmax`` do (a later piece wins only when strictly greater). The reference's
``torch.maximum`` splits the gradient equally between tied pieces instead; both are valid
subgradients and they agree wherever no two pieces tie exactly (generic inputs). Forward
values are identical. Double backward is not implemented by the lean paths.
"""
from __future__ import annotations

import functools
import logging
import os
from typing import Callable

import torch

logger = logging.getLogger(__name__)

IMPLEMENTATIONS = ("auto", "reference", "autograd", "triton")
TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def dyrelu_reference(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, pi: torch.Tensor | None = None) -> torch.Tensor:
    """Straightforward y = pi * max_k(a_k x + b_k) with broadcasting (the baseline)."""
    a = a[:, :, None, None, :]
    b = b[:, :, None, None, :]
    y = x * a[..., 0] + b[..., 0]
    for i in range(1, a.shape[-1]):
        y = torch.maximum(y, x * a[..., i] + b[..., i])
    return y if pi is None else y * pi


# ----------------------------------------------------------------------------- PyTorch (any device)


_CHUNK_ELEMENTS = 1 << 20  # CPU: samples per chunk so that a chunk holds about this many elements


def _pieces(a: torch.Tensor, b: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per-piece contiguous (B, C, 1, 1) coefficients, broadcasting against x. (Strided views such as
    ``a[..., k]`` stop the CPU kernels from vectorising over channels_last's innermost dimension: 3x slower.)"""
    a, b = a.movedim(-1, 0).contiguous()[..., None, None], b.movedim(-1, 0).contiguous()[..., None, None]
    return list(a.unbind(0)), list(b.unbind(0))


def _affine(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """a * x + b with (B, C, 1, 1) coefficients. addcmul is the fastest CPU kernel when channels vary along
    the innermost dimension (channels_last); with the coefficients constant along it (NCHW), mul + add_ is
    (addcmul's broadcast loop is not vectorised there)."""
    if x.stride(1) == 1 or torch.compiler.is_compiling():
        return torch.addcmul(b, x, a, out=out) if out is not None else torch.addcmul(b, x, a)
    return (torch.mul(x, a, out=out) if out is not None else x * a).add_(b)


def _batch_chunks(x: torch.Tensor) -> list[slice]:
    """Slices of the batch. On the CPU, full-size temporaries of a large activation fall out of the
    caches and each fresh allocation page-faults; working on a few samples at a time avoids both
    (about 3x faster for a (8, 256, 64, 48) activation). Elsewhere (and while compiling) one chunk."""
    n = x.shape[0]
    if x.device.type != "cpu" or torch.compiler.is_compiling() or n <= 1:
        return [slice(0, n)]
    step = max(1, _CHUNK_ELEMENTS // max(1, x[0].numel()))
    return [slice(i, i + step) for i in range(0, n, step)]


def _result_dtype(*tensors: torch.Tensor | None) -> torch.dtype:
    return functools.reduce(torch.promote_types, [t.dtype for t in tensors if t is not None])


def dyrelu_forward(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, pi: torch.Tensor | None = None) -> torch.Tensor:
    """y = pi * max_k(a_k x + b_k) without a graph: the output plus one chunk-sized temporary per piece."""
    a_k, b_k = _pieces(a, b)
    if torch.compiler.is_compiling():  # functional form: no out= / in-place, inductor fuses it anyway
        y = torch.addcmul(b_k[0], x, a_k[0])
        for k in range(1, len(a_k)):
            y = torch.maximum(y, torch.addcmul(b_k[k], x, a_k[k]))
        return y if pi is None else y * pi
    y = torch.empty_like(x, dtype=_result_dtype(x, a, b, pi))  # keeps x's memory format
    for s in _batch_chunks(x):
        out = _affine(x[s], a_k[0][s], b_k[0][s], out=y[s])
        for k in range(1, len(a_k)):
            torch.maximum(out, _affine(x[s], a_k[k][s], b_k[k][s]), out=out)
        if pi is not None:
            out.mul_(pi[s])
    return y


def _backward_two_pieces(grad, x, a_k, b_k, pi, dx, dpi) -> tuple[torch.Tensor, torch.Tensor]:
    """K = 2 backward of one chunk: writes dx (and dpi), returns (da, db). Three chunk-sized buffers,
    reused; the selection is a float 0/1 mask (CPU kernels on bool tensors, where() and masked_fill are
    not vectorised: 5-10x slower), and piece 0's sums are the totals minus piece 1's."""
    best = _affine(x, a_k[0], b_k[0])
    v = _affine(x, a_k[1], b_k[1])
    s = torch.gt(v, best, out=torch.empty_like(best))  # 1 where piece 1 is strictly greater: ties go to piece 0
    torch.lerp(a_k[0], a_k[1], s, out=dx)  # the winning slope, exactly (lerp returns its end points at 0 and 1)
    if pi is not None:
        dpi.copy_(torch.maximum(best, v, out=best).mul_(grad).sum(1, keepdim=True))
        gp = torch.mul(grad, pi, out=v)
    else:
        gp = grad
    dx.mul_(gp)
    gp1 = torch.mul(gp, s, out=best)
    gpx = torch.mul(gp, x, out=s)
    sum_gp, sum_gp1, sum_gpx = gp.sum((2, 3)), gp1.sum((2, 3)), gpx.sum((2, 3))
    sum_gpx1 = gp1.mul_(x).sum((2, 3))
    return torch.stack([sum_gpx - sum_gpx1, sum_gpx1], dim=-1), torch.stack([sum_gp - sum_gp1, sum_gp1], dim=-1)


def _backward_any(grad, x, a_k, b_k, pi) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Functional backward for any K (also the form traced by torch.compile)."""
    gp = grad * pi if pi is not None else grad
    best = torch.addcmul(b_k[0], x, a_k[0])
    sel = torch.zeros_like(x, dtype=torch.uint8)
    a_sel = a_k[0]
    for k in range(1, len(a_k)):
        v = torch.addcmul(b_k[k], x, a_k[k])
        take = v > best  # first maximum wins ties
        best, a_sel = torch.where(take, v, best), torch.where(take, a_k[k], a_sel)
        sel = sel.masked_fill(take, k)
    gpx = gp * x
    masks = [sel == k for k in range(len(a_k))]
    da = torch.stack([(gpx * m).sum((2, 3)) for m in masks], dim=-1)
    db = torch.stack([(gp * m).sum((2, 3)) for m in masks], dim=-1)
    dpi = (grad * best).sum(1, keepdim=True) if pi is not None else None
    return gp * a_sel, da, db, dpi


def dyrelu_backward(grad: torch.Tensor, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                    pi: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(dx, da, db, dpi) for dL/dy = ``grad``, recomputing the winning piece s (first maximum):

    dx = g pi a_s,  da_k = sum_HW g pi x [s = k],  db_k = sum_HW g pi [s = k],  dpi = sum_C g max_k(a_k x + b_k).
    """
    a_k, b_k = _pieces(a, b)
    if grad.stride() != x.stride() and not torch.compiler.is_compiling():
        grad = torch.empty_like(x, dtype=grad.dtype).copy_(grad)  # so that dx takes x's memory format
    same_dtype = all(t is None or t.dtype == x.dtype for t in (grad, a, b, pi))
    if len(a_k) != 2 or not same_dtype or torch.compiler.is_compiling():
        dx, da, db, dpi = _backward_any(grad, x, a_k, b_k, pi)
        return dx.to(x.dtype), da.to(a.dtype), db.to(b.dtype), dpi.to(pi.dtype) if pi is not None else None
    dx = torch.empty_like(x)
    dpi = torch.empty_like(pi) if pi is not None else None
    da, db = [], []
    for s in _batch_chunks(x):
        da_s, db_s = _backward_two_pieces(grad[s], x[s], [t[s] for t in a_k], [t[s] for t in b_k],
                                          pi[s] if pi is not None else None, dx[s], dpi[s] if pi is not None else None)
        da.append(da_s)
        db.append(db_s)
    return dx, torch.cat(da), torch.cat(db), dpi


class DyReLUFunction(torch.autograd.Function):
    """Memory-lean autograd node: saves x, a, b, pi; backward recomputes the piecewise selection."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, pi: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, a, b, pi)
        return dyrelu_forward(x, a, b, pi)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, a, b, pi = ctx.saved_tensors
        dx, da, db, dpi = dyrelu_backward(grad, x, a, b, pi)
        need = ctx.needs_input_grad
        return dx if need[0] else None, da if need[1] else None, db if need[2] else None, \
            dpi if need[3] else None


# ----------------------------------------------------------------------------- Triton custom op


@torch.library.custom_op("keypoints::dyrelu_fused", mutates_args=())
def dyrelu_fused(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, pi: torch.Tensor | None) -> torch.Tensor:
    """Fused Triton forward as a custom op (opaque to torch.compile, differentiable)."""
    from .dyrelu_triton import dyrelu_forward_triton
    return dyrelu_forward_triton(x, a, b, pi)


@dyrelu_fused.register_fake
def _(x, a, b, pi):
    return torch.empty_like(x)


@torch.library.custom_op("keypoints::dyrelu_fused_backward", mutates_args=())
def dyrelu_fused_backward(grad: torch.Tensor, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                          pi: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fused Triton backward: (dx, da, db, dpi); dpi is empty when there is no attention."""
    from .dyrelu_triton import dyrelu_backward_triton
    dx, da, db, dpi = dyrelu_backward_triton(grad, x, a, b, pi)
    return dx, da.contiguous(), db.contiguous(), dpi if dpi is not None else x.new_empty(0)


@dyrelu_fused_backward.register_fake
def _(grad, x, a, b, pi):
    return (torch.empty_like(x), torch.empty_like(a), torch.empty_like(b),
            torch.empty_like(pi) if pi is not None else x.new_empty(0))


def _fused_setup_context(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs)
    ctx.has_pi = inputs[3] is not None


def _fused_backward(ctx, grad):
    x, a, b, pi = ctx.saved_tensors
    dx, da, db, dpi = dyrelu_fused_backward(grad, x, a, b, pi)
    return dx, da, db, dpi if ctx.has_pi else None


dyrelu_fused.register_autograd(_fused_backward, setup_context=_fused_setup_context)


# ----------------------------------------------------------------------------- dispatch


@functools.lru_cache(maxsize=None)
def triton_available() -> bool:
    """True when Triton imports (it ships with CUDA builds of PyTorch)."""
    try:
        import triton  # noqa: F401
    except Exception:  # ImportError, or a broken install raising at import
        return False
    return True


def _triton_interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _exporting() -> bool:
    return torch.onnx.is_in_onnx_export() or torch.jit.is_tracing() or torch.jit.is_scripting()


# (device, dtype) -> whether the fused kernels passed their self-check there; filled on first use.
_TRITON_VERDICTS: dict[tuple[torch.device, torch.dtype], bool] = {}
_SELF_CHECK_CASES = (((2, 6, 5, 7), True, True), ((2, 3, 4, 9), False, False))  # shape, channels_last, with pi


def _self_check_failure(device: torch.device, dtype: torch.dtype, fused: Callable) -> str | None:
    """Why ``fused`` is not trustworthy on (device, dtype): None when it matches the reference (values and
    gradients of x, a, b, pi, fp32 math on the same rounded inputs), else a short reason."""
    tol = 1e-4 if dtype == torch.float32 else 1e-2  # bf16/fp16 stores round to 8/11 bits (<= 0.4%); fp32 math inside
    gen = torch.Generator().manual_seed(0)
    # A fresh graph whatever the caller's mode (the check may first run inside no_grad / inference_mode / autocast).
    with torch.inference_mode(False), torch.enable_grad(), torch.autocast(device.type, enabled=False):
        for shape, channels_last, with_pi in _SELF_CHECK_CASES:
            n, c, h, w = shape
            x = torch.randn(shape, generator=gen)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            cpu = [x, torch.randn(n, c, 2, generator=gen), torch.randn(n, c, 2, generator=gen),
                   torch.rand(n, 1, h, w, generator=gen) + 0.1 if with_pi else None]
            grad = torch.randn(shape, generator=gen).to(dtype).float()
            low = [t.to(dtype).float() if t is not None else None for t in cpu]  # the values the kernel sees
            leaves = [t.requires_grad_() for t in low if t is not None]
            y_ref = dyrelu_reference(*low)
            expected = (y_ref, *torch.autograd.grad(y_ref, leaves, grad))
            inputs = [t.detach().to(device, dtype).requires_grad_() if t is not None else None for t in low]
            try:
                y = fused(*inputs)
                actual = (y, *torch.autograd.grad(y, [t for t in inputs if t is not None], grad.to(device, dtype)))
                actual = [t.detach().float().cpu() for t in actual]  # also waits for the kernels to finish
            except Exception as e:  # noqa: BLE001 - any failure of the kernels means "do not use them"
                return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:160]}"
            names = ("output", "dx", "da", "db", "dpi")
            for name, e, r in zip(names, expected, actual):
                if r.shape != e.shape or not torch.allclose(r, e.detach(), rtol=tol, atol=tol):
                    diff = (r - e.detach()).abs().max().item() if r.shape == e.shape else float("nan")
                    return f"{name} differs from the reference by up to {diff:.3g} (shape {tuple(shape)})"
    return None


def triton_self_check(device: torch.device | str, dtype: torch.dtype, fused: Callable | None = None) -> bool:
    """Whether ``auto`` may use the fused kernels on (device, dtype): checked once, cached, a warning if not.

    ``fused``: the kernel entry point taking (x, a, b, pi) (default: the ``keypoints::dyrelu_fused`` op); tests
    pass a failing or wrong one. The check runs eagerly even when called while ``torch.compile`` traces.
    """
    device = torch.device(device)
    key = (device, dtype)
    if key not in _TRITON_VERDICTS:
        reason = _self_check_failure(device, dtype, fused or dyrelu_fused)
        if reason is not None:
            logger.warning("DyReLU: the Triton kernels failed their self-check on %s %s (%s); using the PyTorch "
                           "implementation there instead (same results, slower)", device,
                           str(dtype).replace("torch.", ""), reason)
        _TRITON_VERDICTS[key] = reason is None
    return _TRITON_VERDICTS[key]


def _triton_trusted(x: torch.Tensor) -> bool:
    verdict = _TRITON_VERDICTS.get((x.device, x.dtype))
    if verdict is None:  # first use: run the check outside any compiled graph
        verdict = torch.compiler.disable(triton_self_check)(x.device, x.dtype)
    return verdict


def resolve_impl(impl: str, x: torch.Tensor, needs_grad: bool) -> str:
    """The implementation that runs for ``impl``: reference | autograd | triton | inference (no graph)."""
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"unknown DyReLU impl {impl!r}; choose one of {', '.join(IMPLEMENTATIONS)}")
    if impl == "reference" or _exporting():
        return "reference"
    if impl == "triton":
        if not triton_available():
            raise ValueError("DyReLU impl 'triton' needs the triton package (it ships with CUDA builds of PyTorch); "
                             "use impl='auto'")
        if not (x.is_cuda or _triton_interpreted()) or x.dtype not in TRITON_DTYPES:
            raise ValueError(f"DyReLU impl 'triton' runs on CUDA tensors of dtype float32/bfloat16/float16, got a "
                             f"{x.device.type} {x.dtype} tensor; use impl='auto' to fall back")
        return "triton"
    if impl == "auto" and x.is_cuda and x.dtype in TRITON_DTYPES and triton_available() and _triton_trusted(x):
        return "triton"
    return "autograd" if needs_grad else "inference"


def dyrelu_apply(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, pi: torch.Tensor | None = None,
                 impl: str = "auto") -> torch.Tensor:
    """y = pi * max_k(a_k x + b_k) (see the module docstring for shapes and ``impl``)."""
    needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, a, b, pi))
    impl = resolve_impl(impl, x, needs_grad)
    if impl == "reference":
        return dyrelu_reference(x, a, b, pi)
    if impl == "triton":
        return dyrelu_fused(x, a, b, pi)
    if impl == "autograd":
        return DyReLUFunction.apply(x, a, b, pi)
    return dyrelu_forward(x, a, b, pi)
