"""``edgepose models``: the model zoo as a table."""

from __future__ import annotations

import json

from ..spec import MODELS


def register(sub) -> None:
    p = sub.add_parser("models", help="list the model zoo")
    p.add_argument("--json", action="store_true", help="print the full specs as JSON")
    p.set_defaults(handler=run)


def model_table() -> str:
    rows = [("model", "task", "dataset", "K", "input WxH", "output", "padding", "published", "checkpoint")]
    for s in MODELS.values():
        pub = ", ".join(f"{k} {v:g}" for k, v in list(s.published.items())[:3]) or "-"
        ckpt = s.checkpoint.rsplit("/", 1)[-1]
        size, out = "%dx%d" % s.input_size, "%dx%d" % s.heatmap_size
        if s.task == "detection":  # person boxes: no keypoints, letterboxed frames, 5 maps at stride 4
            rows.append((s.name, s.task, "person", "-", size, out + "x5", "letterbox", pub, ckpt))
            continue
        pad = "mpii rule" if s.info.box_rule == "mpii" else f"{s.box_padding:g}"
        rows.append((s.name, s.task, s.dataset, str(s.num_keypoints), size, out, pad, pub, ckpt))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run(args) -> int:
    if args.json:
        print(json.dumps({k: s.to_dict() for k, s in MODELS.items()}, indent=2))
    else:
        print(model_table())
    return 0
