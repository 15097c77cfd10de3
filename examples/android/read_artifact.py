#!/usr/bin/env python3
"""Everything an Android app needs to run an edgepose TFLite artifact, read from the artifact itself.

    python examples/android/read_artifact.py artifacts/demo_coco_256x192/demo_coco_256x192_int8.tflite
    python examples/android/read_artifact.py MODEL.tflite --json pose_model.json   # bundle it as an app asset

Prints the input tensor (shape, layout, dtype, quantisation, kind: normalised floats, or the crop's uint8 bytes
for artifacts made with ``edgepose convert --input uint8``) and its normalisation, the output heatmap tensor,
the box -> crop rule, the flip test, the decode rule, the keypoint names and the skeleton. The tensor facts
come from the TFLite interpreter (ai-edge-litert) when it is installed, else from the artifact's metadata
(sidecar ``<artifact>.json`` or the copy embedded in the flatbuffer); the model facts from the metadata.
``PoseEstimator.kt`` beside this file implements exactly this contract. Needs ``edgepose`` (numpy + OpenCV).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from edgepose.artifact import INPUT_UINT8, input_kind, read_metadata
from edgepose.errors import EdgeposeError
from edgepose.spec import spec_from_metadata

PIXEL_STD = 200.0  # mmpose's scale unit: scale = box size / 200


def tensor_details(path: Path, meta: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(input, output, source): name/shape/dtype/quantisation of both tensors, from LiteRT or the metadata."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = None
    if Interpreter is not None:
        it = Interpreter(model_path=str(path))
        it.allocate_tensors()

        def pick(d: dict[str, Any]) -> dict[str, Any]:
            scale, zero = d["quantization"]
            q = {"scale": float(scale), "zero_point": int(zero)} if scale else None
            return {"name": d["name"], "shape": [int(v) for v in d["shape"]], "dtype": d["dtype"].__name__,
                    "quantization": q}  # fmt: skip

        return pick(it.get_input_details()[0]), pick(it.get_output_details()[0]), "LiteRT interpreter"
    if "input" not in meta or "output" not in meta:
        raise EdgeposeError(f"{path}: no tensor details (install ai-edge-litert, or keep the .json sidecar)")
    return meta["input"], meta["output"], "artifact metadata"


def describe(path: str | Path) -> dict[str, Any]:
    """The app-facing contract of one artifact, as a JSON-friendly dict."""
    path = Path(path)
    if not path.is_file():
        raise EdgeposeError(f"{path}: artifact not found")
    meta = read_metadata(path)
    if not meta:
        raise EdgeposeError(f"{path}: no edgepose metadata (neither a .json sidecar nor an embedded copy)")
    spec = spec_from_metadata(meta)
    inp, out, source = tensor_details(path, meta)
    kind = input_kind(meta, path)
    if kind == INPUT_UINT8:
        rule = ("feed the crop's RGB bytes as they are (uint8, N x H x W x 3, 0..255): normalisation and layout "
                "are inside the model (edgepose convert --input uint8); mean/std are listed for reference only")
    else:
        rule = ("x = (pixel - mean) / std per RGB channel (pixel 0..255); an int8/uint8 input then takes "
                "q = clamp(round(x / scale) + zero_point) in the dtype's range")
    layout = meta.get("layout") or {"input": "NHWC", "output": "NHWC"}
    w_in, h_in = spec.input_size
    w_hm, h_hm = spec.heatmap_size
    return {
        "artifact": path.name,
        "precision": meta.get("precision"),
        "tensor_source": source,
        "model": spec.name,
        "dataset": spec.dataset,
        "input": {
            **inp,
            "kind": kind,
            "layout": layout.get("input"),
            "size_wh": [w_in, h_in],
            "color": "RGB",
            "mean_rgb_0_255": list(spec.mean),
            "std_rgb_0_255": list(spec.std),
            "rule": rule,
        },
        "output": {
            **out,
            "layout": layout.get("output"),
            "heatmap_size_wh": [w_hm, h_hm],
            "num_keypoints": spec.num_keypoints,
            "rule": "an int8/uint8 output is dequantised first: v = (q - zero_point) * scale",
        },
        "crop": {
            "aspect_ratio": w_in / h_in,
            "box_padding": spec.box_padding,
            "pixel_std": PIXEL_STD,
            "rule": "center = (x + w/2, y + h/2); if w > aspect*h: h = w/aspect, elif w < aspect*h: w = h*aspect; "
            "scale = (w/200, h/200) * padding. Crop = warpAffine(image, M, (W_in, H_in), bilinear, black border) "
            "with M mapping center -> (W_in/2, H_in/2) and factor W_in / (scale_w*200) on both axes; output "
            "pixel (u, v) samples the image at ((u - W_in/2) / f + cx, (v - H_in/2) / f + cy), no half-pixel "
            "offset (OpenCV's convention).",
        },
        "flip_test": {
            "enabled": bool(spec.flip_test),
            "flip_pairs": [list(p) for p in spec.flip_pairs],
            "shift_heatmap": bool(spec.shift_heatmap),
            "rule": "run the mirrored crop too; on its heatmaps swap the channels of each flip pair, mirror "
            "horizontally, then (shift_heatmap) move every row one column right keeping column 0; average the two",
        },
        "decode": {
            "method": meta.get("decode", "default"),
            "rule": "per keypoint: (px, py) = first argmax in row-major order, score = the peak value; if score "
            "<= 0 the point is (-1, -1); if 1 < px < W_hm-1 and 1 < py < H_hm-1 add 0.25*sign(h[py][px+1] - "
            "h[py][px-1]) to px and 0.25*sign(h[py+1][px] - h[py-1][px]) to py; then image x = px * scale_w*200 "
            "/ W_hm + cx - scale_w*200/2 (and y alike with H_hm)",
        },
        "keypoints": list(spec.keypoints),
        "skeleton": [list(p) for p in spec.skeleton],
    }


def print_text(d: dict[str, Any]) -> None:
    i, o, c, f = d["input"], d["output"], d["crop"], d["flip_test"]
    q = lambda t: f"scale {t['quantization']['scale']:.8g}, zero point {t['quantization']['zero_point']}" if t[
        "quantization"] else ("none (float)" if str(t["dtype"]).startswith("float") else "none")  # fmt: skip
    print(f"{d['artifact']}: model {d['model']} ({d['dataset']}), precision {d['precision']}")
    print(f"  tensors read from: {d['tensor_source']}")
    print(f"input   {i['name']}  shape {i['shape']}  layout {i['layout']}  dtype {i['dtype']}  kind {i['kind']}")
    print(f"        quantisation: {q(i)}")
    print(f"        RGB, mean {i['mean_rgb_0_255']}, std {i['std_rgb_0_255']} (0..255 scale)")
    print(f"        {i['rule']}")
    print(f"output  {o['name']}  shape {o['shape']}  layout {o['layout']}  dtype {o['dtype']}")
    print(f"        quantisation: {q(o)}")
    print(f"        {o['num_keypoints']} heatmaps of {o['heatmap_size_wh'][0]}x{o['heatmap_size_wh'][1]} (WxH)")
    print(f"crop    aspect {c['aspect_ratio']:.6g}, padding {c['box_padding']}: {c['rule']}")
    print(f"flip    {'on' if f['enabled'] else 'off'}, pairs {f['flip_pairs']}, shift {f['shift_heatmap']}")
    print(f"decode  {d['decode']['method']}: {d['decode']['rule']}")
    print("keypoints " + ", ".join(f"{k}:{n}" for k, n in enumerate(d["keypoints"])))
    print("skeleton  " + " ".join(f"{a}-{b}" for a, b in d["skeleton"]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifact", help=".tflite artifact made by `edgepose convert`")
    ap.add_argument("--json", dest="json_out", help="also write the contract as JSON (an app asset)")
    args = ap.parse_args(argv)
    try:
        d = describe(args.artifact)
    except EdgeposeError as e:
        print(f"read_artifact: error: {e}", file=sys.stderr)
        return 2
    print_text(d)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(d, indent=2) + "\n")
        print(f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
