""""Is it dynamic?" inspection of DY-ReLU (the DY-ReLU paper's input/output scatter and slope gap).

For every :class:`DyReLU` of a model, forward hooks record a sample of (input, output) pairs and the
per-sample, per-channel slopes ``a^k`` of the hyper function. A static ReLU puts every point on the
two lines y = 0 and y = x; a dynamic one spreads them, differently per image. The slope gap
``|a^1 - a^2|`` (mean over images and channels) is 1 for ReLU at initialisation and drifts per layer
as training makes the activation more or less linear; its spread across images is the "dynamic" part.
For variant C the recorded output includes the spatial attention, so it is the function actually applied.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .models.dyrelu import DyReLU


@dataclass
class DyReLUStats:
    name: str
    variant: str
    channels: int
    inputs: list[np.ndarray] = field(default_factory=list)
    outputs: list[np.ndarray] = field(default_factory=list)
    gaps: list[np.ndarray] = field(default_factory=list)  # (B,) mean |a1 - a2| per image

    @property
    def slope_gap(self) -> float:
        return float(np.concatenate(self.gaps).mean())

    @property
    def slope_gap_std(self) -> float:
        """Spread of the per-image slope gap: 0 for a static activation."""
        return float(np.concatenate(self.gaps).std())


@torch.no_grad()
def collect_dyrelu_stats(model: nn.Module, images: torch.Tensor, points_per_layer: int = 2000,
                         seed: int = 0) -> list[DyReLUStats]:
    """Run ``images`` (B, 3, H, W) through ``model`` and gather the statistics of each DY-ReLU in order."""
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, DyReLU)]
    if not layers:
        raise ValueError("the model has no DY-ReLU activation (model.act / model.head_act are relu/hardswish/original)")
    gen = torch.Generator().manual_seed(seed)
    stats = [DyReLUStats(name, m.variant, m.channels) for name, m in layers]
    handles = []
    for st, (_, module) in zip(stats, layers):
        def hook(mod: DyReLU, args, output, st=st):
            x = args[0].float()
            a, _ = mod.coefficients(args[0])
            if a.shape[-1] >= 2:
                st.gaps.append((a[..., 0] - a[..., 1]).abs().float().mean(dim=1).cpu().numpy())
            flat_x, flat_y = x.reshape(-1), output.float().reshape(-1)
            idx = torch.randint(0, flat_x.numel(), (min(points_per_layer, flat_x.numel()),), generator=gen)
            st.inputs.append(flat_x[idx].cpu().numpy())
            st.outputs.append(flat_y[idx].cpu().numpy())
        handles.append(module.register_forward_hook(hook))
    try:
        model.eval()(images)
    finally:
        for h in handles:
            h.remove()
    return stats


def plot_scatter(stats: list[DyReLUStats], path: str | Path, max_panels: int = 48) -> Path:
    """Grid of input-vs-output scatters, one panel per DY-ReLU layer (evenly subsampled beyond ``max_panels``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = stats if len(stats) <= max_panels else [
        stats[i] for i in np.linspace(0, len(stats) - 1, max_panels).astype(int)]
    cols = min(8, len(chosen))
    rows = int(np.ceil(len(chosen) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.2 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, st in zip(axes.ravel(), chosen):
        ax.axis("on")
        x, y = np.concatenate(st.inputs), np.concatenate(st.outputs)
        ax.scatter(x, y, s=0.5, alpha=0.3, rasterized=True)
        lim = np.percentile(np.abs(x), 99) if x.size else 1.0
        ax.plot([-lim, 0, lim], [0, 0, lim], color="red", lw=0.6)  # ReLU for reference
        ax.set_title(f"{st.name}\ngap {st.slope_gap:.2f}", fontsize=6)
        ax.tick_params(labelsize=5)
    fig.suptitle("DY-ReLU input (x) vs output (y); red: ReLU", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_slope_gap(stats: list[DyReLUStats], path: str | Path) -> Path:
    """Mean |a1 - a2| per layer with its spread across images (error bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gaps = [s.slope_gap for s in stats]
    spread = [s.slope_gap_std for s in stats]
    fig, ax = plt.subplots(figsize=(max(6, 0.18 * len(stats)), 3.2))
    ax.errorbar(np.arange(len(stats)), gaps, yerr=spread, fmt="o-", ms=3, lw=1, capsize=2)
    ax.axhline(1.0, color="grey", lw=0.6, ls="--", label="ReLU (|1 - 0|)")
    ax.set_xlabel("DY-ReLU layer (input to output)")
    ax.set_ylabel("|a1 - a2|")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
