"""Fused Triton kernels for DY-ReLU's elementwise part, y = pi * max_k(a_k x + b_k).

Imported lazily by :mod:`keypoints.models.dyrelu_ops` (only when the ``triton`` implementation
runs), so the package imports without Triton. The kernels run on CUDA tensors, and on CPU
tensors under Triton's interpreter (``TRITON_INTERPRET=1`` set before Triton is imported),
which is how the tests check them on a machine without a GPU.

Layout: x is (B, C, H, W), either NCHW-contiguous or channels_last (anything else is made
contiguous first). Both are addressed as x[b, c, hw] = x_ptr[b*s_b + c*s_c + hw*s_hw] with
hw = h*W + w, which holds for both formats; Triton specialises a stride equal to 1, so a
[BLOCK_C, BLOCK_HW] tile is coalesced along HW (NCHW) or along C (channels_last). The output
and dx have x's strides. a, b are (B, C, K) and pi (B, 1, H, W), made contiguous (they are
small). Loads in fp32/bf16/fp16, math and accumulation in fp32, stores in the input dtype.

Forward: one program per (hw tile, channel block, sample); reads x once, writes y once.

Backward: recomputes the selected piece (the first maximum, as ``torch.max``/``argmax``:
a later piece wins only when strictly greater), writes dx = g * pi * a_sel and reduces

    dpi[b, hw]   = sum_c   g * max_k(a_k x + b_k)            (over the program's channel block)
    da[b, c, k]  = sum_hw  g * pi * x * [sel == k]           (over the program's hw range)
    db[b, c, k]  = sum_hw  g * pi * [sel == k]

Each program owns one channel block and a contiguous range of hw tiles of one sample, so the
per-(b, c) sums accumulate in registers over its range and are written once as partial sums
(split, b, c, 2K); the per-(b, hw) sums over C are written as partials (channel block, b, hw).
A tiny second pass (``torch.sum`` over the split / block axis, a few MB at most) folds them.
No atomics, so the result is deterministic. The number of hw splits is chosen so that the grid
has several programs per SM while each program still loops over a few tiles.
"""
from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_TILE = 2048  # elements per tile (BLOCK_C * BLOCK_HW); 4 warps -> 16 elements per thread


@triton.jit
def _dyrelu_fwd_kernel(x_ptr, a_ptr, b_ptr, pi_ptr, y_ptr, C, HW, s_b, s_c, s_hw,
                       K: tl.constexpr, HAS_PI: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr):
    pid_hw = tl.program_id(0)
    pid_c = tl.program_id(1)
    pid_b = tl.program_id(2)
    c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    hw = pid_hw * BLOCK_HW + tl.arange(0, BLOCK_HW)
    c_mask = c < C
    mask = c_mask[:, None] & (hw < HW)[None, :]
    offs = pid_b.to(tl.int64) * s_b + (c[:, None] * s_c + hw[None, :] * s_hw)
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    coef = pid_b * C * K + c * K
    best = x * tl.load(a_ptr + coef, mask=c_mask, other=0.0).to(tl.float32)[:, None] \
        + tl.load(b_ptr + coef, mask=c_mask, other=0.0).to(tl.float32)[:, None]
    for k in tl.static_range(1, K):
        v = x * tl.load(a_ptr + coef + k, mask=c_mask, other=0.0).to(tl.float32)[:, None] \
            + tl.load(b_ptr + coef + k, mask=c_mask, other=0.0).to(tl.float32)[:, None]
        best = tl.maximum(best, v)
    if HAS_PI:
        p = tl.load(pi_ptr + pid_b * HW + hw, mask=hw < HW, other=0.0).to(tl.float32)
        best = best * p[None, :]
    tl.store(y_ptr + offs, best.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _dyrelu_bwd_kernel(g_ptr, x_ptr, a_ptr, b_ptr, pi_ptr, dx_ptr, dab_ptr, dpi_ptr,
                       B, C, HW, s_b, s_c, s_hw, g_b, g_c, g_hw, tiles_per_split,
                       K: tl.constexpr, KP: tl.constexpr, HAS_PI: tl.constexpr,
                       BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr):
    pid_s = tl.program_id(0)
    pid_c = tl.program_id(1)
    pid_b = tl.program_id(2)
    c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    c_mask = c < C
    coef = pid_b * C * K + c * K
    kk = tl.arange(0, KP)
    acc_a = tl.zeros((BLOCK_C, KP), dtype=tl.float32)  # sum_hw g*pi*x over the positions where piece k wins
    acc_b = tl.zeros((BLOCK_C, KP), dtype=tl.float32)  # sum_hw g*pi over the same positions
    x_base = pid_b.to(tl.int64) * s_b
    g_base = pid_b.to(tl.int64) * g_b
    for t in range(0, tiles_per_split):
        hw = (pid_s * tiles_per_split + t) * BLOCK_HW + tl.arange(0, BLOCK_HW)
        hw_mask = hw < HW
        mask = c_mask[:, None] & hw_mask[None, :]
        x_offs = x_base + (c[:, None] * s_c + hw[None, :] * s_hw)
        x = tl.load(x_ptr + x_offs, mask=mask, other=0.0).to(tl.float32)
        g = tl.load(g_ptr + g_base + (c[:, None] * g_c + hw[None, :] * g_hw), mask=mask, other=0.0).to(tl.float32)
        # Recompute the winning piece: first maximum (a later piece must be strictly greater).
        a_sel = tl.load(a_ptr + coef, mask=c_mask, other=0.0).to(tl.float32)[:, None] + tl.zeros_like(x)
        best = x * a_sel + tl.load(b_ptr + coef, mask=c_mask, other=0.0).to(tl.float32)[:, None]
        sel = tl.zeros((BLOCK_C, BLOCK_HW), dtype=tl.int32)
        for k in tl.static_range(1, K):
            a_k = tl.load(a_ptr + coef + k, mask=c_mask, other=0.0).to(tl.float32)[:, None]
            v = x * a_k + tl.load(b_ptr + coef + k, mask=c_mask, other=0.0).to(tl.float32)[:, None]
            take = v > best
            best = tl.where(take, v, best)
            a_sel = tl.where(take, a_k, a_sel)
            sel = tl.where(take, k, sel)
        if HAS_PI:
            p = tl.load(pi_ptr + pid_b * HW + hw, mask=hw_mask, other=0.0).to(tl.float32)
            dpi = tl.sum(g * best, axis=0)  # masked lanes have g == 0
            tl.store(dpi_ptr + (pid_c * B + pid_b).to(tl.int64) * HW + hw, dpi, mask=hw_mask)
            gp = g * p[None, :]
        else:
            gp = g
        tl.store(dx_ptr + x_offs, (gp * a_sel).to(dx_ptr.dtype.element_ty), mask=mask)
        gpx = gp * x
        for k in tl.static_range(0, K):
            is_k = sel == k
            acc_a += tl.where(kk[None, :] == k, tl.sum(tl.where(is_k, gpx, 0.0), axis=1)[:, None], 0.0)
            acc_b += tl.where(kk[None, :] == k, tl.sum(tl.where(is_k, gp, 0.0), axis=1)[:, None], 0.0)
    # Partial sums, layout (split, B, C, 2K): slopes in [:K], intercepts in [K:].
    out = ((pid_s * B + pid_b) * C + c[:, None]).to(tl.int64) * (2 * K) + kk[None, :]
    out_mask = c_mask[:, None] & (kk < K)[None, :]
    tl.store(dab_ptr + out, acc_a, mask=out_mask)
    tl.store(dab_ptr + out + K, acc_b, mask=out_mask)


def _layout(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """x as NCHW- or channels_last-contiguous, and its (sample, channel, position) strides."""
    if not x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last):
        x = x.contiguous()
    s_b, s_c, s_h, s_w = x.stride()
    # Both formats have s_h == W * s_w when H, W > 1; with W == 1 the position stride is s_h.
    return x, (s_b, s_c, s_w if x.shape[3] > 1 else s_h)


def _blocks(channels: int, hw: int, channels_contiguous: bool) -> tuple[int, int]:
    """(BLOCK_C, BLOCK_HW): the tile's long side follows the contiguous dimension."""
    if channels_contiguous:
        block_c = min(triton.next_power_of_2(channels), 128)
        block_hw = min(max(_TILE // block_c, 16), triton.next_power_of_2(hw))
    else:
        block_hw = min(triton.next_power_of_2(hw), 256)
        block_c = min(max(_TILE // block_hw, 1), triton.next_power_of_2(channels))
    return block_c, block_hw


def _check(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, pi: torch.Tensor | None) -> None:
    if x.dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"the triton DyReLU kernels take {SUPPORTED_DTYPES}, got {x.dtype}")
    n, c = x.shape[:2]
    if a.shape != b.shape or a.shape[:2] != (n, c):
        raise ValueError(f"DyReLU coefficients must be (B, C, K) = ({n}, {c}, K), "
                         f"got {tuple(a.shape)}, {tuple(b.shape)}")
    if pi is not None and pi.shape != (n, 1, *x.shape[2:]):
        raise ValueError(f"DyReLU attention must be (B, 1, H, W) = ({n}, 1, {x.shape[2]}, {x.shape[3]}), "
                         f"got {tuple(pi.shape)}")


def dyrelu_forward_triton(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                          pi: torch.Tensor | None = None) -> torch.Tensor:
    """y = pi * max_k(a_k x + b_k) in one pass; y has x's shape, dtype and memory format."""
    _check(x, a, b, pi)
    x, (s_b, s_c, s_hw) = _layout(x)
    n, c, h, w = x.shape
    k = a.shape[-1]
    y = torch.empty_like(x)
    if y.numel() == 0:
        return y
    a, b = a.contiguous(), b.contiguous()
    pi_ = pi.contiguous() if pi is not None else x  # dummy pointer when there is no attention
    block_c, block_hw = _blocks(c, h * w, s_c == 1)
    grid = (triton.cdiv(h * w, block_hw), triton.cdiv(c, block_c), n)
    _dyrelu_fwd_kernel[grid](x, a, b, pi_, y, c, h * w, s_b, s_c, s_hw, K=k, HAS_PI=pi is not None,
                             BLOCK_C=block_c, BLOCK_HW=block_hw, num_warps=4)
    return y


@functools.lru_cache(maxsize=None)
def _num_sms(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 1  # interpreter: few programs, each looping over several tiles (the tests exercise both paths)


def dyrelu_backward_triton(grad: torch.Tensor, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                           pi: torch.Tensor | None = None
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Gradients (dx, da, db, dpi) of y = pi * max_k(a_k x + b_k) for the incoming ``grad`` (dL/dy).

    dx has x's dtype and memory format; da, db, dpi have the dtypes of a, b, pi (dpi is None
    without attention).
    """
    _check(x, a, b, pi)
    x, (s_b, s_c, s_hw) = _layout(x)
    grad = grad.to(x.dtype)
    if grad.stride() != x.stride():  # same layout as x, so that the tile is coalesced for both
        grad = grad.contiguous(memory_format=torch.channels_last if s_c == 1 else torch.contiguous_format)
    grad, (g_b, g_c, g_hw) = _layout(grad)
    n, c, h, w = x.shape
    hw, k = h * w, a.shape[-1]
    if x.numel() == 0:
        return torch.zeros_like(x), torch.zeros_like(a), torch.zeros_like(b), \
            torch.zeros_like(pi) if pi is not None else None
    a_, b_ = a.contiguous(), b.contiguous()
    block_c, block_hw = _blocks(c, hw, s_c == 1)
    c_blocks, tiles = triton.cdiv(c, block_c), triton.cdiv(hw, block_hw)
    # Enough programs to fill the GPU (about 8 per SM), each looping over as many hw tiles as that allows.
    splits = min(tiles, max(1, triton.cdiv(8 * _num_sms(x.device), n * c_blocks)))
    tiles_per_split = triton.cdiv(tiles, splits)
    splits = triton.cdiv(tiles, tiles_per_split)
    dx = torch.empty_like(x)
    dab = torch.empty((splits, n, c, 2 * k), device=x.device, dtype=torch.float32)
    dpi = torch.empty((c_blocks, n, hw), device=x.device, dtype=torch.float32) if pi is not None else None
    grid = (splits, c_blocks, n)
    _dyrelu_bwd_kernel[grid](grad, x, a_, b_, pi.contiguous() if pi is not None else x, dx, dab,
                             dpi if dpi is not None else dab, n, c, hw, s_b, s_c, s_hw, g_b, g_c, g_hw,
                             tiles_per_split, K=k, KP=triton.next_power_of_2(k), HAS_PI=pi is not None,
                             BLOCK_C=block_c, BLOCK_HW=block_hw, num_warps=4)
    # The tiny second pass: fold the partial sums over hw splits and channel blocks.
    dab = dab.sum(0) if splits > 1 else dab[0]
    da, db = dab[..., :k].to(a.dtype), dab[..., k:].to(b.dtype)
    if dpi is not None:
        dpi = (dpi.sum(0) if c_blocks > 1 else dpi[0]).view(n, 1, h, w).to(pi.dtype)
    return dx, da, db, dpi
