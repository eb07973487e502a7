"""Inference form of the pose network: BatchNorm folded, DY-ReLU rewritten into fewer, cheaper passes.

``fuse_for_inference(model)`` returns a new module (the argument is left untouched: training and its evaluation
keep the live model) that computes the same function as ``model`` in eval mode, up to float rounding
(max |difference| ~1e-6 on heatmaps of O(1); tests/test_fused.py checks every activation site of the Large and
Small models, variants A/B/C, batch 1 and 8, NCHW and channels_last). The rewrites, all exact in real arithmetic:

- BatchNorm (eval statistics) folded into the preceding convolution or transposed convolution.
- DY-ReLU coefficients as one affine of the sigmoid: ``a_k = init_a_k - lambda_a + 2 lambda_a sigmoid(z)`` (and the
  same for b), with the second hyper-function layer's rows reordered to ``(2K, C)`` so that one view gives every
  piece's slopes and intercepts as contiguous ``(B, C)`` rows (no per-piece slicing of an interleaved layout).
- Spatial attention (variant C): ``1/tau`` (and, when ``spatial_bn`` is on, the BatchNorm's eval-mode scale) folded
  into the 1x1 weights; the bias and BatchNorm shift dropped (a softmax is shift-invariant); the logits computed as
  a matrix product over channels; ``gamma HW softmax_HW(z)`` as ``gamma e / mean_HW(e)``, ``e = exp(z - max z)``.
- DY-ReLU after a 1x1 convolution + BN (the expansion layers, the last backbone conv, the light head's blocks: most
  activations): both reductions read the convolution's input u, which is narrower (the expansion ratio) and
  available before the convolution: ``mean_HW(W u + b) = W mean_HW(u) + b`` with ``W`` folded into the first
  hyper-function layer, and ``w_s . (W u + b) = (w_s W) . u + const``.
- For inductor (torch.compile / AOTInductor), the two hyper-function layers as broadcast products summed over the
  input features: inductor generates one loop per layer that streams the weight rows with the bias and the ReLU /
  sigmoid fused in, instead of a BLAS matrix-vector call. At batch 1 these weights (~36 MB for the Large model,
  over this machine's 32 MB L3) dominate DY-ReLU-C's extra cost, and the loop reads them ~2.6x faster.
- ``y = pi * max_k(a_k x + b_k)`` in one pass: compiled (torch.compile / AOTInductor), a functional graph that
  inductor fuses into one loop (and ONNX exports as standard operators); eager, the no-graph CPU kernel of
  :func:`keypoints.models.dyrelu_ops.dyrelu_forward` (in-place, batch-chunked).

ReLU / h-swish sites get the BatchNorm folding only (the "ReLU twin" is fused the same way, so runtime comparisons
are fair). The ImageNet normalisation stays a separate step: folding it into the stem convolution is not exact at
the zero-padded border.

The ONNX export records the same function with standard operators and no shape arithmetic (the spatial logits as a
1x1 convolution, which runtimes keep in their convolution layout, instead of a matrix product that made OpenVINO
transpose every tensor; no addcmul, which exports with one more pass over the tensor).

What is left of DY-ReLU-C's extra cost, where it is measured (docs/benchmarks.md, ``python tools/benchmark.py
--sections inference``): the pooling, the spatial attention and the elementwise pass each read a full tensor that
ReLU, fused into the convolution, never reads; at batch 1 the hyper-function matrix products too. In ONNX Runtime
every elementwise operator is a separate pass plus a layout conversion out of and back into its blocked convolution
format.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from .dyrelu import DyReLU
from .dyrelu_ops import dyrelu_forward

__all__ = ["fuse_for_inference", "FusedConvAct", "FusedDyReLU", "fold_batchnorm"]

_CONVS = (nn.Conv2d, nn.ConvTranspose2d)
_ACTS = (DyReLU, nn.ReLU, nn.Hardswish)


def _inductor_traced() -> bool:
    """True while torch.compile or torch.export captures the graph for inductor (not while an ONNX export does)."""
    return ((torch.compiler.is_compiling() or torch.compiler.is_exporting())
            and not torch.onnx.is_in_onnx_export())


def _hyper_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for a hyper-function layer, x ``(B, in)``. For inductor it is written as a
    broadcast product summed over the input features, which inductor generates as one loop that streams the weight
    rows (bias and the next ReLU / sigmoid fused in) instead of calling the BLAS matrix-vector product: at batch 1
    the DY-ReLU-C Large model reads ~36 MB of hyper-function weights per call, more than this machine's L3, and
    the generated loop reads them at ~21 GB/s against ~8 GB/s for the BLAS call (3840x240 weights, 2 threads).
    Same sums in another order (float rounding only). Eager and ONNX keep the BLAS / Gemm form: eagerly the product
    would be materialised."""
    if _inductor_traced():
        return (x[:, None, :] * weight).sum(-1) + bias
    return F.linear(x, weight, bias)


def _traced() -> bool:
    """True while a graph is being captured (torch.compile, torch.export, ONNX export, TorchScript tracing): the
    elementwise pass then takes its functional form, which the compiler fuses and the exporters can record."""
    return (torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export()
            or torch.jit.is_tracing())


@torch.no_grad()
def fold_batchnorm(conv: nn.Module, bn: nn.BatchNorm2d | None) -> nn.Module:
    """A new ``Conv2d`` / ``ConvTranspose2d`` (with bias) equal to ``bn(conv(x))`` with ``bn``'s running statistics
    (eval mode); ``bn=None`` copies ``conv`` with a bias. Folded in float64, stored in the conv's dtype."""
    if not isinstance(conv, _CONVS):
        raise ValueError(f"fold_batchnorm needs a Conv2d or ConvTranspose2d, got {type(conv).__name__}")
    fused = copy.deepcopy(conv)
    weight = conv.weight.double()
    bias = conv.bias.double() if conv.bias is not None else torch.zeros(conv.out_channels, dtype=torch.float64)
    if bn is not None:
        if not bn.track_running_stats or bn.running_mean is None:
            raise ValueError("fold_batchnorm needs a BatchNorm with running statistics (track_running_stats=True)")
        scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        shift = bn.bias.double() - bn.running_mean.double() * scale
        if isinstance(conv, nn.Conv2d):
            weight = weight * scale.view(-1, 1, 1, 1)
        else:  # ConvTranspose2d weight: (in, out / groups, kH, kW); output channel o = g * out/groups + j
            groups = conv.groups
            weight = (weight.view(groups, -1, *weight.shape[1:]) * scale.view(groups, 1, -1, 1, 1)).view_as(weight)
        bias = bias * scale + shift
    fused.weight = nn.Parameter(weight.to(conv.weight.dtype), requires_grad=False)
    fused.bias = nn.Parameter(bias.to(conv.weight.dtype), requires_grad=False)
    return fused


def _is_pointwise(conv: nn.Module) -> bool:
    """A 1x1, stride-1, unpadded, ungrouped Conv2d: ``conv(u) = W u + b`` at every position."""
    return (isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and conv.stride == (1, 1)
            and conv.padding in ((0, 0), "valid") and conv.dilation == (1, 1) and conv.groups == 1)


class FusedDyReLU(nn.Module):
    """Eval-mode :class:`~keypoints.models.dyrelu.DyReLU` rewritten for inference (see the module docstring).

    ``pointwise``: the folded 1x1 ``Conv2d`` that produces this activation's input; the hyper function and the
    spatial logits then read that convolution's input instead (``forward(x, source=u)``). Shapes: x ``(B, C, H, W)``,
    u ``(B, Cin, H, W)``, any memory format (the output keeps x's).
    """

    def __init__(self, act: DyReLU, pointwise: nn.Conv2d | None = None) -> None:
        super().__init__()
        if not isinstance(act, DyReLU):
            raise ValueError(f"FusedDyReLU needs a DyReLU, got {type(act).__name__}")
        self.channels, self.variant, self.k = act.channels, act.variant, act.k
        self.tau, self.gamma = act.tau, act.gamma
        self.on_input = pointwise is not None
        k, coef_channels = act.k, act.fc2.out_features // (2 * act.k)
        self.coef_channels = coef_channels  # C, or 1 for variant A
        with torch.no_grad():
            fc1_w, fc1_b = act.fc1.weight.double(), act.fc1.bias.double()
            if pointwise is not None:  # fc1(W u + b) = (fc1 W) u + (fc1 b + fc1_bias)
                conv_w, conv_b = pointwise.weight.double().flatten(1), pointwise.bias.double()
                fc1_w, fc1_b = fc1_w @ conv_w, fc1_b + act.fc1.weight.double() @ conv_b
            # fc2 rows from the interleaved (C', 2K) layout to (2K, C'): row j * C' + c <- c * 2K + j.
            order = torch.arange(coef_channels * 2 * k).view(coef_channels, 2 * k).t().reshape(-1)
            piece = torch.arange(2 * k).repeat_interleave(coef_channels)
            lam = torch.where(piece < k, act.lambda_a, act.lambda_b).double()
            init = torch.cat([act.init_a.double(), act.init_b.double()])[piece]
            dtype = act.fc1.weight.dtype
            self.register_buffer("fc1_weight", fc1_w.to(dtype))
            self.register_buffer("fc1_bias", fc1_b.to(dtype))
            self.register_buffer("fc2_weight", act.fc2.weight[order].clone())
            self.register_buffer("fc2_bias", act.fc2.bias[order].clone())
            self.register_buffer("coef_scale", (2.0 * lam).to(dtype))
            self.register_buffer("coef_offset", (init - lam).to(dtype))
            if act.variant == "C":
                w_s = act.spatial.weight.double().flatten() / act.tau
                if act.spatial_bn is not None:  # eval-mode BN on the logits: an affine; its shift drops out too
                    bn = act.spatial_bn
                    w_s = w_s * (bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps))
                if pointwise is not None:
                    w_s = w_s @ conv_w
                self.register_buffer("spatial_weight", w_s.to(dtype))
            else:
                self.spatial_weight = None

    def extra_repr(self) -> str:
        return f"{self.channels}, variant={self.variant}, k={self.k}, reductions_on_input={self.on_input}"

    def coefficient_rows(self, source: torch.Tensor) -> torch.Tensor:
        """Every coefficient, ``(B, 2K C')`` (C' = C, or 1 for variant A): a_1 .. a_K then b_1 .. b_K, C' each."""
        hidden = torch.relu(_hyper_linear(source.mean(dim=(2, 3)), self.fc1_weight, self.fc1_bias))
        # written out, not addcmul: exporters record addcmul with an extra multiplication by its value (1)
        return torch.sigmoid(_hyper_linear(hidden, self.fc2_weight, self.fc2_bias)) * self.coef_scale + self.coef_offset

    def coefficients(self, source: torch.Tensor) -> torch.Tensor:
        """Slopes then intercepts, ``(B, 2K, C)``: rows 0..K-1 are a_k, rows K..2K-1 are b_k."""
        coef = self.coefficient_rows(source).view(source.shape[0], 2 * self.k, -1)
        return coef.expand(-1, -1, self.channels) if self.variant == "A" else coef

    def spatial_attention(self, source: torch.Tensor) -> torch.Tensor:
        """pi ``(B, 1, H, W)`` in [0, 1]: ``min(gamma HW softmax_HW(w . source), 1)`` (1/tau inside ``w``), computed
        as ``min(gamma e / mean_HW(e), 1)`` with ``e = exp(z - max_HW z)`` (the same value; no spatial size needed,
        so an exported graph computes no shapes)."""
        if torch.onnx.is_in_onnx_export():  # a 1x1 convolution: runtimes keep it in the convolutions' layout
            logits = F.conv2d(source, self.spatial_weight.view(1, -1, 1, 1))
        else:
            n, _, h, w = source.shape
            if source.is_contiguous(memory_format=torch.channels_last) and not source.is_contiguous():
                logits = torch.matmul(source.permute(0, 2, 3, 1).reshape(n, h * w, -1), self.spatial_weight)
            else:
                logits = torch.matmul(self.spatial_weight, source.reshape(n, -1, h * w))
            logits = logits.view(n, 1, h, w)
        logits = logits if logits.dtype == torch.float32 else logits.float()
        e = torch.exp(logits - logits.amax(dim=(2, 3), keepdim=True))
        return torch.clamp(e / e.mean(dim=(2, 3), keepdim=True) * self.gamma, max=1.0)

    def forward(self, x: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
        source = x if source is None else source
        pi = self.spatial_attention(source) if self.spatial_weight is not None else None
        pi = pi if pi is None or pi.dtype == x.dtype else pi.to(x.dtype)
        if not _traced():  # eager: in-place, batch-chunked CPU kernel; a, b as (B, C, K)
            coef = self.coefficients(source).to(x.dtype)
            return dyrelu_forward(x, coef[:, :self.k].transpose(1, 2), coef[:, self.k:].transpose(1, 2), pi)
        # Traced: (B, C', 1, 1) pieces from one reshape and one split of constant sizes (no shape arithmetic in an
        # exported graph), then the functional elementwise pass, as plain products and sums (an exported addcmul
        # costs one more pass over the tensor: a multiplication by its value, 1).
        rows = self.coefficient_rows(source)
        rows = rows if rows.dtype == x.dtype else rows.to(x.dtype)
        pieces = rows.view(-1, 2 * self.k * self.coef_channels, 1, 1).split(self.coef_channels, dim=1)
        y = x * pieces[0] + pieces[self.k]
        for j in range(1, self.k):
            y = torch.maximum(y, x * pieces[j] + pieces[self.k + j])
        return y if pi is None else y * pi


class FusedConvAct(nn.Module):
    """Convolution with BatchNorm folded in, then the activation (a :class:`FusedDyReLU`, ReLU, h-swish or none).

    ``source`` names the modules of the original network this one replaces (used by tests and reports).
    """

    def __init__(self, conv: nn.Module, act: nn.Module | None, source: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.conv, self.act, self.source = conv, act, tuple(source)
        self.reads_input = isinstance(act, FusedDyReLU) and act.on_input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if self.act is None:
            return y
        return self.act(y, source=x) if self.reads_input else self.act(y)


def _fused_site(conv: nn.Module, bn: nn.Module | None, act: nn.Module | None, source: tuple[str, ...]) -> FusedConvAct:
    folded = fold_batchnorm(conv, bn)
    if isinstance(act, DyReLU):
        act = FusedDyReLU(act, pointwise=folded if _is_pointwise(folded) else None)
    elif isinstance(act, nn.ReLU):
        act = nn.ReLU(inplace=True)
    return FusedConvAct(folded, act, source)


def _match(children: list[tuple[str, nn.Module]], i: int) -> int:
    """Length of the conv [-> BN] [-> activation] run starting at ``children[i]`` (0 when none, or a bare conv)."""
    if not isinstance(children[i][1], _CONVS):
        return 0
    n = 1
    if i + n < len(children) and isinstance(children[i + n][1], nn.BatchNorm2d):
        n += 1
    if i + n < len(children) and isinstance(children[i + n][1], _ACTS):
        n += 1
    return n if n > 1 else 0


def _site(run: list[nn.Module], source: tuple[str, ...]) -> FusedConvAct:
    bn = next((m for m in run if isinstance(m, nn.BatchNorm2d)), None)
    act = next((m for m in run if isinstance(m, _ACTS)), None)
    return _fused_site(run[0], bn, act, source)


def _fuse_runs(seq: nn.Sequential, prefix: str) -> None:
    """Runs inside a longer Sequential (the deconv head's layers): a fused site in the conv's slot and Identity in
    the others, so that the remaining children keep their names."""
    children = list(seq.named_children())
    i = 0
    while i < len(children):
        n = _match(children, i)
        if n == 0:
            i += 1
            continue
        setattr(seq, children[i][0], _site([m for _, m in children[i:i + n]],
                                           tuple(f"{prefix}{c}" for c, _ in children[i:i + n])))
        for c, _ in children[i + 1:i + n]:
            setattr(seq, c, nn.Identity())
        i += n


def _fuse_into(module: nn.Module, prefix: str) -> None:
    if isinstance(module, nn.Sequential):
        _fuse_runs(module, prefix)
    for name, child in list(module.named_children()):
        path = f"{prefix}{name}"
        if isinstance(child, (FusedConvAct, FusedDyReLU)):
            continue
        children = list(child.named_children())
        if isinstance(child, nn.Sequential) and children and _match(children, 0) == len(children):
            setattr(module, name, _site([m for _, m in children], (path,)))  # the whole Sequential (ConvBNAct)
        elif isinstance(child, DyReLU):  # an activation not behind a convolution
            setattr(module, name, FusedDyReLU(child))
        else:
            _fuse_into(child, f"{path}.")


def fuse_for_inference(model: nn.Module) -> nn.Module:
    """A fused copy of ``model`` for inference (eval mode, no gradients); ``model`` itself is not modified.

    Every Conv2d / ConvTranspose2d -> BatchNorm2d [-> DyReLU | ReLU | Hardswish] run (the :class:`ConvBNAct` rows of
    the backbone and heads, the deconv head's layers) becomes one :class:`FusedConvAct`; a DyReLU elsewhere becomes a
    :class:`FusedDyReLU`. BatchNorm layers use their running statistics (as in eval mode), so fuse a trained model,
    not one in the middle of a training step. The copy keeps the input's memory format (``.to(memory_format=...)``
    works on it as on the original).
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"fuse_for_inference needs an nn.Module, got {type(model).__name__}")
    fused = copy.deepcopy(model).eval()
    _fuse_into(fused, "")
    for p in fused.parameters():
        p.requires_grad_(False)
    return fused
