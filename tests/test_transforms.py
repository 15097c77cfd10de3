"""The exact sub-pixel rewrite of the deconvolution head (converters/transforms.py).

Each rewritten model is compared with the original PyTorch module (ConvTranspose2d + BatchNorm2d as PyTorch
computes them, eval mode, non-trivial running statistics); the exported graphs are run by ONNX Runtime, whose
DepthToSpace(DCR) is an implementation independent of the rewrite's own PyTorch forward.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgepose.converters.transforms import HEAD_FORMS, REWRITES, rewrite_head  # noqa: E402

from edgepose.errors import EdgeposeError  # noqa: E402

FORMS = [f for f in HEAD_FORMS if f != "deconv"]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def _randomise_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
    return model.eval()


def _small_model(relu: bool = True, bias: bool = False, channels: int = 8, k: int = 3) -> torch.nn.Module:
    """A head of the mmpose layout, small: 3 deconv blocks (optionally with bias, optionally without ReLU)."""
    from edgepose.models import TopdownHeatmapSimpleHead

    torch.manual_seed(1)
    head = TopdownHeatmapSimpleHead(6, k, channels)
    layers = []
    for i in range(3):
        layers += [torch.nn.ConvTranspose2d(6 if i == 0 else channels, channels, 4, 2, 1, bias=bias),
                   torch.nn.BatchNorm2d(channels)]  # fmt: skip
        layers += [torch.nn.ReLU()] if relu else []
    head.deconv_layers = torch.nn.Sequential(*layers)
    return _randomise_bn(_HeadOnly(head))


class _HeadOnly(torch.nn.Module):
    def __init__(self, head: torch.nn.Module):
        super().__init__()
        self.keypoint_head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.keypoint_head(x)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("relu,bias", [(True, False), (False, True)])
def test_small_head_is_exact_and_original_untouched(form, relu, bias):
    """Without the ReLU (negative values kept) and with a deconv bias, every output pixel of every phase."""
    model = _small_model(relu=relu, bias=bias)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 6, 5, 7)
    with torch.inference_mode():
        ref = model(x)
        new = rewrite_head(model, form)
        out = new(x)
        feats, feats_ref = new.keypoint_head.deconv_layers(x), model.keypoint_head.deconv_layers(x)
    assert out.shape == ref.shape == (2, 3, 40, 56)
    assert _rel(out, ref) <= 1e-5 and _rel(feats, feats_ref) <= 1e-5
    assert bool((feats_ref < 0).any()) != relu  # without the ReLU, negative values (signs) are compared too
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in model.modules()) == 3
    assert not any(isinstance(m, (torch.nn.ConvTranspose2d, torch.nn.BatchNorm2d)) for m in new.modules())


def _full_model(which: str) -> torch.nn.Module:
    from edgepose.models import build_model, load_model

    if which == "random":
        torch.manual_seed(0)
        return _randomise_bn(build_model("demo_coco_256x192"))
    try:
        return load_model("demo_coco_256x192", progress=False)  # the trained demo model (shipped weights)
    except EdgeposeError as e:
        pytest.skip(f"demo checkpoint unavailable: {e}")


@pytest.mark.parametrize("which", ["random", "demo"])
def test_full_model_heatmaps_match(which):
    """The random-weight and the trained demo model: heatmaps of both forms within 1e-4 relative (~1e-6 seen)."""
    model = _full_model(which)
    x = torch.randn(1, 3, 256, 192, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        ref = model(x)
        for form in FORMS:
            out = rewrite_head(model, form)(x)
            assert out.shape == (1, 17, 64, 48)
            assert _rel(out, ref) <= 1e-4, form
    assert rewrite_head(model, "deconv") is model


@pytest.mark.parametrize("form", FORMS)
def test_exported_graph_has_no_conv_transpose_and_onnxruntime_agrees(tmp_path, form):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = _small_model(relu=False, bias=True)
    path = tmp_path / f"{form}.onnx"
    x = torch.randn(1, 6, 5, 7)
    torch.onnx.export(rewrite_head(model, form), (x,), str(path), opset_version=13, dynamo=False,
                      input_names=["input"], output_names=["out"])  # fmt: skip
    nodes = onnx.load(str(path)).graph.node
    ops = [n.op_type for n in nodes]
    assert "ConvTranspose" not in ops and "BatchNormalization" not in ops
    d2s = [n for n in nodes if n.op_type == "DepthToSpace"]
    assert len(d2s) == 3
    assert all(onnx.helper.get_attribute_value(a) == b"DCR" for n in d2s for a in n.attribute if a.name == "mode")
    assert ops.count("Conv") == (12 if form == "subpixel2x2" else 3) + 1
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    with torch.inference_mode():
        ref = model(x).numpy()
    assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()


def test_bad_form_and_unsupported_layer_fail_with_one_line():
    model = _small_model()
    with pytest.raises(EdgeposeError, match="unknown head form 'subpixel'"):
        rewrite_head(model, "subpixel")
    model.keypoint_head.deconv_layers[0] = torch.nn.ConvTranspose2d(6, 8, 3, 2, 1, bias=False)
    with pytest.raises(EdgeposeError, match=r"deconv_layers\.0: head rewrite supports ConvTranspose2d\(k=4, s=2"):
        rewrite_head(model, "subpixel2x2")
    assert REWRITES["deconv"] == [] and all(REWRITES[f] for f in FORMS)


def _tiny_tflite(tmp_path, unsupported: bool):
    """A small float TFLite graph; with ``unsupported`` a CUMSUM (no XNNPACK kernel) sits in its middle."""
    tf = pytest.importorskip("tensorflow")

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 4], tf.float32)])
    def f(x):
        y = tf.nn.relu(x * 2.0 + 1.0)
        y = tf.math.cumsum(y, axis=1) if unsupported else y
        return tf.nn.relu(y - 1.0) * 3.0

    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    path = tmp_path / f"tiny_{unsupported}.tflite"
    path.write_bytes(conv.convert())
    return path


def test_xnnpack_delegation_reader_tells_one_partition_from_a_split_graph(tmp_path):
    """The reader used on the artifacts (tests/test_convert.py) can fail: a CUMSUM splits the graph in two."""
    pytest.importorskip("ai_edge_litert")
    from edgepose.converters.targets.tflite.convert import tflite_operators, xnnpack_delegation

    whole = _tiny_tflite(tmp_path, unsupported=False)
    split = _tiny_tflite(tmp_path, unsupported=True)
    assert "CUMSUM v1" not in tflite_operators(whole) and tflite_operators(split)["CUMSUM v1"] == 1
    assert xnnpack_delegation(whole) == {"partitions": 1, "whole_graph": True}
    assert xnnpack_delegation(split) == {"partitions": 2, "whole_graph": False}
