"""Issue 23, items 4-5: the float cap of the accuracy control (``--max-float``, the share of the model's MACs
counted on the ONNX graph) and a search that ends with its one-line best drop when a candidate fails."""

from __future__ import annotations

import numpy as np
import pytest

from edgepose.errors import EdgeposeError
from edgepose.spec import get_spec

SPEC = get_spec("demo_coco_256x192")


@pytest.fixture(scope="module")
def demo_onnx(tmp_path_factory, demo_checkpoint):
    pytest.importorskip("onnxruntime")
    from edgepose.converters.export import export_onnx
    from edgepose.models import load_model

    model = load_model(SPEC, str(demo_checkpoint), progress=False).float().eval()
    path = export_onnx(model, SPEC, tmp_path_factory.mktemp("macs") / "m.onnx")
    return model, path


def test_macs_counted_on_the_onnx_graph_match_pytorch(demo_onnx):
    """Independent source: forward hooks on the PyTorch model's Conv2d / ConvTranspose2d / Linear layers."""
    import torch

    from edgepose.converters.int8.macs import count

    model, path = demo_onnx
    total = []

    def hook(m, x, y):
        if isinstance(m, torch.nn.ConvTranspose2d):
            total.append(x[0].numel() * m.weight[0].numel())
        else:
            total.append(y.numel() * m.weight[0].numel())

    hs = [m.register_forward_hook(hook) for m in model.modules()
          if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear))]  # fmt: skip
    with torch.inference_mode():
        model(torch.zeros(1, 3, SPEC.input_size[1], SPEC.input_size[0]))
    for h in hs:
        h.remove()
    m = count(path)
    assert m.total == sum(total) and len(m.per_node) == len(total)
    big = max(m.per_node, key=m.per_node.get)
    assert m.float_share([big]) == pytest.approx(max(total) / sum(total))
    assert m.float_share(list(m.per_node)) == pytest.approx(1.0) and m.float_share([]) == 0.0
