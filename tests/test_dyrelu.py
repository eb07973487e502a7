"""DY-ReLU against hand-computed values (SPEC section 1)."""
import math

import pytest
import torch
from torch import nn

from keypoints.models.dyrelu import DyReLU, hidden_width
from keypoints.models.layers import get_act_layer


def _set_residual(m: DyReLU, value: float) -> None:
    """Make the hyper function output a constant residual: 0 exactly, or saturated +-1 (2*sigmoid(+-100)-1)."""
    nn.init.zeros_(m.fc2.weight)
    nn.init.constant_(m.fc2.bias, {0.0: 0.0, 1.0: 100.0, -1.0: -100.0}[value])


def _uniform_attention(m: DyReLU) -> None:
    nn.init.zeros_(m.spatial.weight)
    nn.init.zeros_(m.spatial.bias)


X = torch.linspace(-3, 3, 2 * 4 * 5 * 6).reshape(2, 4, 5, 6)


@pytest.mark.parametrize("variant", ["A", "B"])
def test_zero_residual_is_exactly_relu(variant):
    m = DyReLU(4, variant=variant)
    _set_residual(m, 0.0)
    assert torch.equal(m(X), torch.relu(X))


def test_zero_residual_uniform_attention_is_relu_over_three():
    m = DyReLU(4, variant="C")
    _set_residual(m, 0.0)
    _uniform_attention(m)
    torch.testing.assert_close(m(X), torch.relu(X) / 3, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("variant", ["A", "B", "C"])
def test_saturated_residuals(variant):
    m = DyReLU(4, variant=variant, gamma=1.0 if variant == "C" else 1 / 3)
    if variant == "C":
        _uniform_attention(m)  # gamma = HW -> pi = 1 everywhere
    _set_residual(m, 1.0)  # a = (2, 1), b = (0.5, 0.5)
    torch.testing.assert_close(m(X), torch.maximum(2 * X + 0.5, X + 0.5))
    _set_residual(m, -1.0)  # a = (0, -1), b = (-0.5, -0.5)
    torch.testing.assert_close(m(X), torch.maximum(torch.full_like(X, -0.5), -X - 0.5))


def test_coefficients_follow_the_equations():
    m = DyReLU(3, variant="B", k=2, lambda_a=0.7, lambda_b=0.3, init_a=(1.0, 0.2), init_b=(0.1, -0.1))
    x = torch.randn(2, 3, 4, 4)
    pooled = x.mean((2, 3))
    theta = 2 * torch.sigmoid(m.fc2(torch.relu(m.fc1(pooled)))) - 1
    theta = theta.view(2, 3, 4)
    a, b = m.coefficients(x)
    torch.testing.assert_close(a, torch.tensor([1.0, 0.2]) + 0.7 * theta[..., :2])
    torch.testing.assert_close(b, torch.tensor([0.1, -0.1]) + 0.3 * theta[..., 2:])
    expected = torch.maximum(x * a[..., 0, None, None] + b[..., 0, None, None],
                             x * a[..., 1, None, None] + b[..., 1, None, None])
    torch.testing.assert_close(m(x), expected)


def test_spatial_attention_temperature_and_clip():
    m = DyReLU(2, variant="C", tau=10.0, gamma=1 / 3)
    nn.init.zeros_(m.spatial.weight)
    # Logits z: one position at 20, the others 0 (bias via a single hot input channel).
    with torch.no_grad():
        m.spatial.weight[0, 0] = 1.0
    x = torch.zeros(1, 2, 3, 4)
    x[0, 0, 1, 2] = 20.0
    pi = m.spatial_attention(x)
    hw = 12
    e = math.exp(20.0 / 10.0)  # temperature 10
    soft_hot, soft_rest = e / (e + hw - 1), 1 / (e + hw - 1)
    gamma = hw / 3
    assert pi[0, 0, 1, 2].item() == pytest.approx(min(gamma * soft_hot, 1.0))  # 4 * 0.4 = 1.6 -> clipped to 1
    assert pi[0, 0, 1, 2].item() == 1.0
    assert pi[0, 0, 0, 0].item() == pytest.approx(gamma * soft_rest, rel=1e-6)
    # A higher temperature flattens the attention towards 1/3.
    m.tau = 1000.0
    assert m.spatial_attention(x)[0, 0, 0, 0].item() == pytest.approx(1 / 3, rel=0.05)


def test_spatial_bn_option():
    m = DyReLU(4, variant="C", spatial_bn=True)
    assert isinstance(m.spatial_bn, nn.BatchNorm2d)
    m(torch.randn(2, 4, 5, 5)).sum().backward()
    assert m.spatial_bn.weight.grad is not None


@pytest.mark.parametrize("variant", ["A", "B", "C"])
def test_gradients_reach_every_parameter(variant):
    m = DyReLU(8, variant=variant)
    # Per-sample channel offsets so that the pooled vectors differ and the hidden ReLUs are not all dead.
    x = (torch.randn(4, 8, 6, 5) + 2 * torch.randn(4, 8, 1, 1)).requires_grad_()
    (m(x) * torch.randn(4, 8, 6, 5)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_hidden_width_rounding():
    assert hidden_width(16, 4) == 4 and hidden_width(8, 8) == 4  # at least 4
    assert hidden_width(960, 4) == 240 and hidden_width(72, 4) == 20 and hidden_width(72, 8) == 8


@pytest.mark.parametrize("variant", ["A", "B", "C"])
def test_bf16_autocast_and_channels_last(variant):
    m = DyReLU(8, variant=variant)
    x = torch.randn(2, 8, 6, 5)
    ref = m(x)
    xc = x.to(memory_format=torch.channels_last)
    out = m(xc)
    torch.testing.assert_close(out, ref)
    assert out.is_contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out16 = m(x.bfloat16())
    assert out16.dtype == torch.bfloat16  # no promotion of the full-size output to float32
    torch.testing.assert_close(out16.float(), ref, rtol=0.05, atol=0.05)


def test_bad_arguments_have_clear_errors():
    with pytest.raises(ValueError, match="unknown DyReLU variant 'D'; choose one of A, B, C"):
        DyReLU(4, variant="D")
    with pytest.raises(ValueError, match="positive integer"):
        DyReLU(0)
    with pytest.raises(ValueError, match="k=3 values"):
        DyReLU(4, k=3)
    with pytest.raises(ValueError, match=r"expects input \(B, 4, H, W\), got \(1, 5, 2, 2\)"):
        DyReLU(4)(torch.randn(1, 5, 2, 2))
    with pytest.raises(ValueError, match="unknown activation 'swish'; choose one of relu, hardswish"):
        get_act_layer("swish")


def test_activation_lookup():
    assert isinstance(get_act_layer("relu")(8), nn.ReLU)
    assert isinstance(get_act_layer("hardswish")(8), nn.Hardswish)
    assert isinstance(get_act_layer("original", original="HS")(8), nn.Hardswish)
    assert isinstance(get_act_layer("original", original="RE")(8), nn.ReLU)
    for name, variant in [("dyrelu_a", "A"), ("dyrelu_b", "B"), ("dyrelu_c", "C")]:
        m = get_act_layer(name, reduction=8, tau=5.0)(16)
        assert isinstance(m, DyReLU) and m.variant == variant and m.tau == 5.0 and m.fc1.out_features == 4


@pytest.mark.slow
def test_torch_compile_matches_eager():
    m = DyReLU(8, variant="C")
    x = torch.randn(2, 8, 6, 5)
    torch.testing.assert_close(torch.compile(m)(x), m(x), rtol=1e-5, atol=1e-5)


def test_onnx_export_matches(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    m = DyReLU(8, variant="C").eval()
    x = torch.randn(2, 8, 6, 5)
    path = tmp_path / "dyrelu.onnx"
    torch.onnx.export(m, (x,), str(path), input_names=["x"], output_names=["y"], dynamo=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"x": x.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(y), m(x), rtol=1e-5, atol=1e-5)
