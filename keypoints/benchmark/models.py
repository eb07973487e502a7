"""Sections "models" and "dyrelu" of ``tools/benchmark.py``: size, MACs, CPU latency, training throughput, memory.

Every number is also given as a ratio to a ReLU-without-SE model measured in the same run (the
machine may be shared and noisy: compare ratios, not absolute values). Timings interleave the
models round by round and report medians.

- Parameters and MACs: ``torch.utils.flop_counter.FlopCounterMode`` on one 3 x H x W crop,
  MACs = FLOPs / 2 (convolutions and matrix products; elementwise work is not counted).
- CPU latency: the PyTorch eager backend (:class:`~keypoints.backends.TorchBackend`: eval mode, no grad,
  fp32, channels_last) on uint8 crops, ``torch.set_num_threads(threads)``.
- Training step: forward + MSE loss + backward + Adam step on uint8 images (the model
  normalises), channels_last; bf16 autocast on CUDA, fp32 on the CPU.
- Memory: on CUDA the peak of ``torch.cuda.max_memory_allocated`` over one training step (the
  model, gradients and Adam state included). The CPU allocator is not tracked, so on the CPU the
  proxy is the size of the tensors autograd saves for backward during the forward pass
  (distinct storages, via ``torch.autograd.graph.saved_tensors_hooks``), labelled as such.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from ..backends import ModelInfo, TorchBackend
from ..config import Config
from ..models import build_model
from .report import ratio
from .timing import interleaved_medians, sync


@dataclass
class BenchSettings:
    device: str = "cpu"  # training device: cpu | cuda
    batch_size: int = 16  # training batch
    latency_batches: tuple[int, ...] = (1, 32)  # CPU latency batches
    input_size: tuple[int, int] | None = None  # (width, height); None: each config's data.input_size
    threads: int = 2  # CPU threads for latency (and CPU training)
    repeats: int = 5  # timed rounds (medians are reported)
    warmup: int = 2  # untimed rounds first
    train_iters: int = 1  # training steps per timed sample (more on a GPU, where a step is short)
    compile: bool = False  # dyrelu section: add torch.compile rows


def relu_twin(cfg: Config) -> Config:
    """The same network with plain ReLU everywhere and no SE (the baseline of the ratios)."""
    model = dataclasses.replace(cfg.model, act="relu", head_act="relu", se=False)
    return dataclasses.replace(cfg, model=model)


def with_impl(cfg: Config, impl: str) -> Config:
    dyrelu = dataclasses.replace(cfg.model.dyrelu, impl=impl)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, dyrelu=dyrelu))


def input_hw(cfg: Config, settings: BenchSettings) -> tuple[int, int]:
    width, height = settings.input_size or cfg.data.input_size
    return height, width


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, hw: tuple[int, int]) -> int:
    """Multiply-accumulates of one forward pass on a single (1, 3, H, W) crop."""
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, 3, *hw))
    return counter.get_total_flops() // 2


def saved_tensor_bytes(model: nn.Module, batch: int, hw: tuple[int, int]) -> int:
    """Bytes of the distinct tensors autograd keeps for backward after one training-mode forward."""
    model.train()
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.device.type != "meta" and not isinstance(t, nn.Parameter):
            storage = t.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    images = torch.randint(0, 256, (batch, 3, *hw), dtype=torch.uint8).contiguous(memory_format=torch.channels_last)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(images)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    del out
    return sum(n for ptr, n in storages.items() if ptr not in params)


def latency_fn(model: nn.Module, batch: int, cfg: Config, hw: tuple[int, int]) -> Callable[[], None]:
    """One forward pass of ``model`` (built from ``cfg``) through the PyTorch eager backend (eval, no grad,
    channels_last) on ``batch`` random uint8 crops of ``hw`` = (H, W): the "eager" runtime of the inference
    section."""
    info = dataclasses.replace(ModelInfo.from_config(cfg), input_size=(hw[1], hw[0]),
                               heatmap_size=(hw[1] // 4, hw[0] // 4))
    backend = TorchBackend(model.eval(), info, "cpu", channels_last=True)
    images = torch.randint(0, 256, (batch, 3, *hw), dtype=torch.uint8)
    return lambda: backend(images)


def train_step_fn(model: nn.Module, batch: int, hw: tuple[int, int], device: torch.device, iters: int = 1,
                  num_keypoints: int = 17) -> Callable[[], None]:
    """``iters`` training steps (forward, MSE, backward, Adam) of ``model`` on fixed random data.

    ``model`` may be a ``torch.compile`` wrapper (it is only called with the full batch)."""
    model = model.to(device).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    images = torch.randint(0, 256, (batch, 3, *hw), dtype=torch.uint8, device=device)
    images = images.contiguous(memory_format=torch.channels_last)
    target = torch.rand(batch, num_keypoints, hw[0] // 4, hw[1] // 4, device=device)  # heatmaps at stride 4
    amp = torch.bfloat16 if device.type == "cuda" else None

    def run() -> None:
        for _ in range(iters):
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                loss = F.mse_loss(model(images).float(), target)
            loss.backward()
            optimizer.step()
    return run


def cuda_peak_bytes(step: Callable[[], None], model: nn.Module, device: torch.device) -> int:
    """Peak bytes allocated for ``model``'s training step: its parameters, gradients, Adam state and
    activations. Other resident models (measured earlier in the run) are subtracted."""
    sync(device)
    others = torch.cuda.memory_allocated(device) - sum(p.numel() * p.element_size() for p in model.parameters())
    step()  # creates the gradients and the Adam state
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    sync(device)
    return torch.cuda.max_memory_allocated(device) - others


def measure_models(configs: dict[str, Config], settings: BenchSettings) -> list[dict]:
    """One row per config, with the ratios to its ReLU-without-SE twin (added to the run when missing)."""
    twins = {}
    all_cfgs = dict(configs)
    for name, cfg in configs.items():
        twin = relu_twin(cfg)
        twin_name = next((n for n, c in all_cfgs.items() if c.model == twin.model and c.data.input_size ==
                          twin.data.input_size), None)
        if twin_name is None:
            twin_name = f"{name} [ReLU twin]"
            all_cfgs[twin_name] = twin
        twins[name] = twin_name
    torch.set_num_threads(settings.threads)
    rows = {}
    models = {}
    for name, cfg in all_cfgs.items():
        torch.manual_seed(0)
        model = build_model(cfg.model)
        hw = input_hw(cfg, settings)
        rows[name] = {"config": name, "params_m": count_params(model) / 1e6, "macs_g": count_macs(model, hw) / 1e9}
        models[name] = (model, hw)
    for batch in settings.latency_batches:
        fns = {name: latency_fn(m, batch, all_cfgs[name], hw) for name, (m, hw) in models.items()}
        for name, sec in interleaved_medians(fns, settings.repeats, settings.warmup).items():
            rows[name][f"latency_b{batch}_ms"] = sec * 1e3
    rows_train = _measure_training({name: (m, hw) for name, (m, hw) in models.items()}, settings)
    for name, extra in rows_train.items():
        rows[name].update(extra)
    out = []
    for name in all_cfgs:
        row, base = rows[name], rows[twins.get(name, name)]
        row["baseline"] = twins.get(name, name)
        for key in [k for k in row if k not in ("config", "baseline") and not k.endswith("_x")]:
            row[key + "_x"] = ratio(row[key], base[key])
        out.append(row)
    return out


def _measure_training(models: dict[str, tuple[nn.Module, tuple[int, int]]], settings: BenchSettings,
                      compiled: tuple[str, ...] = ()) -> dict[str, dict]:
    """Throughput (img/s) and memory (bytes) of a training step for each model, interleaved."""
    device = torch.device(settings.device)
    rows: dict[str, dict] = {name: {} for name in models}
    steps = {}
    for name, (model, hw) in models.items():
        if device.type == "cpu":
            rows[name]["saved_mib"] = saved_tensor_bytes(model, settings.batch_size, hw) / 2 ** 20
        model.to(device)
        net = torch.compile(model) if name in compiled else model
        steps[name] = train_step_fn(net, settings.batch_size, hw, device, settings.train_iters,
                                    model.head.final.out_channels)
        if device.type == "cuda":
            rows[name]["peak_mib"] = cuda_peak_bytes(steps[name], model, device) / 2 ** 20
    for name, sec in interleaved_medians(steps, settings.repeats, settings.warmup, device=device).items():
        rows[name]["train_img_s"] = settings.batch_size * settings.train_iters / sec
    return rows


def measure_dyrelu_impls(cfg: Config, settings: BenchSettings) -> list[dict]:
    """Training step of ``cfg`` (a DY-ReLU model) per elementwise implementation, beside its ReLU twin."""
    device = torch.device(settings.device)
    impls = ["reference", "autograd"]
    if device.type == "cuda":
        impls.append("triton")
    variants = [("ReLU (no SE)", relu_twin(cfg), False)] + [(f"DY-ReLU impl={i}", with_impl(cfg, i), False)
                                                            for i in impls]
    if settings.compile:
        variants += [(f"{n} + torch.compile", c, True) for n, c, _ in list(variants) if "autograd" not in n]
    torch.set_num_threads(settings.threads)
    models = {}
    for name, variant_cfg, _ in variants:
        torch.manual_seed(0)
        models[name] = (build_model(variant_cfg.model), input_hw(variant_cfg, settings))
    compiled = tuple(name for name, _, c in variants if c)
    rows = _measure_training(models, settings, compiled)
    out = []
    for name, _, is_compiled in variants:
        row = {"implementation": name, **rows[name]}
        base = rows["ReLU (no SE) + torch.compile" if is_compiled else "ReLU (no SE)"]
        ref = rows["DY-ReLU impl=reference + torch.compile" if is_compiled else "DY-ReLU impl=reference"]
        row["train_img_s_x"] = ratio(row["train_img_s"], base["train_img_s"])
        mem = "peak_mib" if "peak_mib" in row else "saved_mib"
        row[mem + "_x"] = ratio(row[mem], base[mem])
        row["speedup_vs_reference"] = ratio(row["train_img_s"], ref["train_img_s"]) if "DY-ReLU" in name else None
        out.append(row)
    return out
