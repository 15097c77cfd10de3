"""Train the demo person detector (``demo_person_detector``) on synthetic multi-person scenes, plain PyTorch, CPU.

CenterNet's recipe, shortened: the scene is fitted into the 320x256 input (random scale 0.6-1.5x of the
letterbox fit and random placement, or the exact letterbox half of the time), horizontal flip, colour jitter;
targets at stride 4: a Gaussian per person centre (CenterNet's radius for IoU 0.7), box size (fraction of the
input) and centre offset at the centre cell; crowd figures (mostly hidden, tiny, mostly cropped away) are ignore
regions. Loss: focal loss (alpha 2, beta 4) on the heatmap logits, L1 on size (in stride-4 cells, weight 0.1)
and offset (weight 1) at centres. Adam, warmup + cosine on a wall-clock schedule (``--minutes``), checkpoints
every few minutes, resumable (``--resume``). The backbone starts from the bundled demo pose model (strictly
loaded); ``--freeze`` keeps its high-resolution stages fixed (they already see these figures; fixing them
halves the work per image on two cores).

    python tools/train_detector.py --out runs/det --minutes 75 --threads 1
    python tools/train_detector.py --out runs/det --report   # benchmarks/results/detector_training.{json,png}
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from edgepose import synthetic
from edgepose.checkpoint import save_mmpose_checkpoint
from edgepose.detector_eval import score_detector
from edgepose.models import CenterNetDetector, load_model
from edgepose.spec import get_spec

SPEC = get_spec("demo_person_detector")
ROOT = Path(__file__).resolve().parents[1]
IN_W, IN_H = SPEC.input_size
OUT_W, OUT_H = IN_W // 4, IN_H // 4
MAX_OBJ = 32
FREEZE = ("conv1", "layer1", "layer2", "layer3")


# ------------------------------------------------------------------------------------------- data
def _render(args: tuple[int, int]) -> tuple:
    cv2.setNumThreads(1)
    seed, i = args
    img, persons = synthetic.render_scene(np.random.default_rng([seed, i]))
    boxes = np.array([p["bbox"] for p in persons], np.float32).reshape(-1, 4)
    crowd = np.array([p["iscrowd"] for p in persons], bool)
    return img, boxes, crowd


def render_pool(seed: int, num_images: int, procs: int = 2) -> list:
    """Pre-render training scenes into memory (the CPU then only augments and trains)."""
    import multiprocessing as mp

    with mp.get_context("fork").Pool(procs) as workers:
        return list(workers.imap(_render, [(seed, i) for i in range(num_images)], chunksize=16))


def gaussian_radius(h: float, w: float, min_overlap: float = 0.7) -> float:
    """CenterNet's ``gaussian_radius`` (the three corner cases, as published)."""
    a1, b1, c1 = 1, h + w, w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1**2 - 4 * a1 * c1)) / 2
    a2, b2, c2 = 4, 2 * (h + w), (1 - min_overlap) * w * h
    r2 = (b2 + math.sqrt(b2**2 - 4 * a2 * c2)) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (h + w), (min_overlap - 1) * w * h
    r3 = (b3 + math.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def draw_gaussian(hm: np.ndarray, cx: int, cy: int, radius: int) -> None:
    d = 2 * radius + 1
    sigma = d / 6
    g = np.exp(-(np.arange(-radius, radius + 1)[None, :] ** 2 + np.arange(-radius, radius + 1)[:, None] ** 2)
               / (2 * sigma * sigma))  # fmt: skip
    h, w = hm.shape
    left, right = min(cx, radius), min(w - cx, radius + 1)
    top, bottom = min(cy, radius), min(h - cy, radius + 1)
    region = hm[cy - top : cy + bottom, cx - left : cx + right]
    np.maximum(region, g[radius - top : radius + bottom, radius - left : radius + right], out=region)


def augment(
    rng: np.random.Generator, img: np.ndarray, boxes: np.ndarray, crowd: np.ndarray, train: bool = True,
    size: tuple[int, int] = (IN_W, IN_H),
):  # fmt: skip
    """Fit the scene into the input (pixel-edge mapping u' = s u + d), flip, colour; boxes x1 y1 x2 y2 in input.

    ``size`` smaller than the input is a window on the scene at the input's scales (training crops: people
    keep the sizes they have at deployment; the work per image falls with the pixel count).
    """
    h, w = img.shape[:2]
    s0 = min(IN_W / w, IN_H / h)
    cw, ch = size
    if size != (IN_W, IN_H) or (train and rng.random() < 0.5):
        s = s0 * math.exp(rng.uniform(math.log(0.6), math.log(1.5))) if train else s0
        nw, nh = w * s, h * s
        dx = rng.uniform(min(0, cw - nw), max(0, cw - nw))
        dy = rng.uniform(min(0, ch - nh), max(0, ch - nh))
        sx = sy = s
    else:  # the device's letterbox, exactly
        nw, nh = max(1, min(IN_W, round(w * s0))), max(1, min(IN_H, round(h * s0)))
        sx, sy = nw / w, nh / h
        dx, dy = (IN_W - nw) // 2, (IN_H - nh) // 2
    m = np.array([[sx, 0, 0.5 * sx - 0.5 + dx], [0, sy, 0.5 * sy - 0.5 + dy]], np.float64)
    pad = tuple(float(round(v)) for v in SPEC.mean)
    out = cv2.warpAffine(img, m, (cw, ch), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=pad)
    b = np.stack([boxes[:, 0] * sx + dx, boxes[:, 1] * sy + dy,
                  (boxes[:, 0] + boxes[:, 2]) * sx + dx, (boxes[:, 1] + boxes[:, 3]) * sy + dy], 1)  # fmt: skip
    full = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, cw)
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, ch)
    bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    keep = (bw > 1) & (bh > 1)
    crowd = crowd | (bw * bh < 0.4 * np.maximum(full, 1e-6)) | (bw < 3) | (bh < 3)
    b, crowd = b[keep], crowd[keep]
    if train:
        if rng.random() < 0.5:
            out = out[:, ::-1]
            b[:, [0, 2]] = cw - b[:, [2, 0]]
        f = out.astype(np.float32)
        grey = f.mean(2, keepdims=True)
        f = grey + (f - grey) * rng.uniform(0.6, 1.4)  # saturation
        f = f * rng.uniform(0.7, 1.3) + rng.uniform(-25, 25)  # contrast, brightness
        out = np.clip(f, 0, 255)
    return np.ascontiguousarray(out, np.float32), b.astype(np.float32), crowd


def targets(boxes: np.ndarray, crowd: np.ndarray, size: tuple[int, int] = (IN_W, IN_H)):
    """Heatmap, heatmap weight (0 on crowd regions), and up to MAX_OBJ (index, wh, offset, mask) for an input
    of ``size``; sizes are fractions of the model's input (320x256) whatever the training window."""
    out_w, out_h = size[0] // 4, size[1] // 4
    hm = np.zeros((out_h, out_w), np.float32)
    weight = np.ones((out_h, out_w), np.float32)
    ind = np.zeros(MAX_OBJ, np.int64)
    wh = np.zeros((MAX_OBJ, 2), np.float32)
    off = np.zeros((MAX_OBJ, 2), np.float32)
    mask = np.zeros(MAX_OBJ, np.float32)
    for x1, y1, x2, y2 in boxes[crowd]:
        weight[int(y1 // 4) : int(math.ceil(y2 / 4)), int(x1 // 4) : int(math.ceil(x2 / 4))] = 0
    k = 0
    for x1, y1, x2, y2 in boxes[~crowd][:MAX_OBJ]:
        cx, cy = (x1 + x2) / 8, (y1 + y2) / 8
        ix, iy = min(int(cx), out_w - 1), min(int(cy), out_h - 1)
        r = max(0, int(gaussian_radius((y2 - y1) / 4, (x2 - x1) / 4)))
        draw_gaussian(hm, ix, iy, r)
        ind[k] = iy * out_w + ix
        wh[k] = ((x2 - x1) / IN_W, (y2 - y1) / IN_H)
        off[k] = (cx - ix, cy - iy)
        mask[k] = 1
        k += 1
    weight = np.maximum(weight, (hm > 0).astype(np.float32))
    return hm, weight, ind, wh, off, mask


def batches(pool: list, batch: int, rng: np.random.Generator, size: tuple[int, int] = (IN_W, IN_H)):
    mean, std = np.float32(SPEC.mean), np.float32(SPEC.std)
    while True:
        cols = [[] for _ in range(7)]
        for k in rng.integers(0, len(pool), batch):
            img, b, c = augment(rng, *pool[k], size=size)
            cols[0].append(((img - mean) / std).transpose(2, 0, 1))
            for j, t in enumerate(targets(b, c, size), start=1):
                cols[j].append(t)
        yield [torch.from_numpy(np.ascontiguousarray(np.stack(c))) for c in cols]


def loss_fn(raw: torch.Tensor, hm, weight, ind, wh, off, mask, rel_wh: float = 0.0) -> tuple[torch.Tensor, dict]:
    raw = raw.float()
    logit = raw[:, 0]
    p = torch.sigmoid(logit).clamp(1e-4, 1 - 1e-4)
    pos = (hm == 1).float()
    neg = (1 - pos) * weight
    pos_loss = -(F.logsigmoid(logit) * (1 - p) ** 2 * pos).sum()
    neg_loss = -(F.logsigmoid(-logit) * p**2 * (1 - hm) ** 4 * neg).sum()
    n = pos.sum().clamp(min=1)
    focal = (pos_loss + neg_loss) / n
    flat = raw[:, 1:].flatten(2)  # (N, 4, H*W)
    at = flat.gather(2, ind[:, None, :].expand(-1, 4, -1)).transpose(1, 2)  # (N, MAX_OBJ, 4)
    m = mask[..., None]
    nm = mask.sum().clamp(min=1)
    cells = torch.tensor([OUT_W, OUT_H], dtype=torch.float32)
    l_wh = (torch.abs(at[..., :2] - wh) * cells * m).sum() / nm
    l_off = (torch.abs(at[..., 2:] - off) * m).sum() / nm
    # relative size error (|pred - gt| / gt): the absolute L1 in cells barely moves a small person's box
    l_rel = (torch.abs(at[..., :2] - wh) / wh.clamp(min=1e-3) * m).sum() / nm
    total = focal + 0.1 * l_wh + l_off + rel_wh * l_rel
    return total, {"focal": focal.item(), "wh": l_wh.item(), "off": l_off.item(), "rel": l_rel.item()}


# ------------------------------------------------------------------------------------------- eval
def box_ap(model: torch.nn.Module, ann_path: Path, images_dir: Path, max_images: int | None = None) -> dict:
    """COCO box AP through the device-side decode (:class:`PersonDetector`) on the PyTorch model."""
    model.eval()

    def infer(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    return score_detector(infer, SPEC, ann_path, images_dir, max_images)["metrics"]


# ------------------------------------------------------------------------------------------- train
def lr_at(frac: float, base: float, warm: float = 0.03) -> float:
    if frac < warm:
        return base * (0.05 + 0.95 * frac / warm)
    t = min(1.0, (frac - warm) / (1 - warm))
    return base * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t)))


def set_train(model: CenterNetDetector, frozen: tuple[str, ...]) -> None:
    model.train()
    for name in frozen:  # fixed stages keep their BatchNorm statistics too
        getattr(model.backbone, name).eval()


def train(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = CenterNetDetector().init_from_pose(load_model("demo_coco_256x192"))
    frozen = FREEZE if args.freeze else ()
    for name in frozen:
        for p in getattr(model.backbone, name).parameters():
            p.requires_grad_(False)
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    it, elapsed, best = 0, 0.0, -1.0
    state_path = out / "state.pt"
    if args.resume and state_path.is_file():
        st = torch.load(state_path, map_location="cpu", weights_only=True)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        it, elapsed, best = int(st["it"]), float(st["elapsed"]), float(st["best"])
        print(f"resumed at iteration {it}, {elapsed / 60:.1f} min", flush=True)
    val_ann, val_imgs = synthetic.ensure_scenes("scenes_val")
    tr = time.time()
    pool = render_pool(synthetic.SCENE_SPLITS["scenes_train"][1], args.pool_images)
    print(f"training pool: {len(pool)} scenes, {sum(int((~c).sum()) for _, _, c in pool)} persons "
          f"({time.time() - tr:.0f} s)", flush=True)  # fmt: skip
    loader = batches(pool, args.batch, np.random.default_rng([args.seed, it]), tuple(args.train_size))
    log = open(out / "log.jsonl", "a")
    budget = args.minutes * 60.0
    t0 = time.time() - elapsed
    last_ckpt = last_eval = time.time()
    running, n_seen, t_it = None, 0, time.time()
    parts: dict[str, float] = {}

    def save(tag: str, ap: float | None = None) -> None:
        meta = {"edgepose": "demo_person_detector", "iteration": it, "minutes": round((time.time() - t0) / 60, 2),
                "val_ap50": ap, "seed": args.seed}  # fmt: skip
        save_mmpose_checkpoint(model, out / f"{tag}.pth", meta=meta, half=True)
        tmp = out / "state.pt.part"
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "it": it,
                    "elapsed": time.time() - t0, "best": best}, tmp)  # fmt: skip
        os.replace(tmp, state_path)

    def evaluate() -> float:
        nonlocal best
        te = time.time()
        stats = box_ap(model, val_ann, val_imgs, args.eval_images)
        set_train(model, frozen)
        rec = {"it": it, "min": round((time.time() - t0) / 60, 2), "val": stats, "eval_s": round(time.time() - te, 1)}
        log.write(json.dumps(rec) + "\n")
        log.flush()
        print(f"[eval] it {it} min {rec['min']} AP {stats['AP']:.4f} AP50 {stats['AP50']:.4f} "
              f"AP75 {stats['AP75']:.4f} ({rec['eval_s']} s)", flush=True)  # fmt: skip
        if stats["AP50"] > best:
            best = stats["AP50"]
            save("best", best)
        return stats["AP50"]

    set_train(model, frozen)
    for x, hm, weight, ind, wh, off, mask in loader:
        frac = (time.time() - t0) / budget
        if frac >= 1.0:
            break
        lr = lr_at(frac, args.lr)
        for g in opt.param_groups:
            g["lr"] = lr
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            raw = model.forward_raw(x)
        loss, comp = loss_fn(raw, hm, weight, ind, wh, off, mask, args.rel_wh)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        it += 1
        n_seen += len(x)
        running = loss.item() if running is None else 0.9 * running + 0.1 * loss.item()
        parts = {k: (v if k not in parts else 0.9 * parts[k] + 0.1 * v) for k, v in comp.items()}
        if it % args.log_every == 0:
            dt = time.time() - t_it
            rec = {"it": it, "min": round((time.time() - t0) / 60, 2), "loss": running, "lr": lr,
                   "img_s": n_seen / dt, **parts}  # fmt: skip
            log.write(json.dumps(rec) + "\n")
            log.flush()
            print(f"it {it} min {rec['min']:.1f} loss {running:.3f} (focal {parts['focal']:.3f} wh {parts['wh']:.3f} "
                  f"rel {parts['rel']:.3f} off {parts['off']:.3f}) lr {lr:.2e} {rec['img_s']:.1f} img/s",
                  flush=True)  # fmt: skip
            n_seen, t_it = 0, time.time()
        if time.time() - last_ckpt > args.ckpt_minutes * 60:
            save("latest")
            last_ckpt = time.time()
        if args.eval_minutes > 0 and time.time() - last_eval > args.eval_minutes * 60:
            evaluate()
            last_eval = time.time()
            t_it, n_seen = time.time(), 0
    save("latest")
    args.eval_images = None
    evaluate()
    log.close()
    print("done", flush=True)


# ------------------------------------------------------------------------------------------- report
def report(args) -> None:
    """benchmarks/results/detector_training.json and the loss / AP50 curve PNG, from the run's log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(args.out)
    recs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if line.strip()]
    train_recs = [r for r in recs if "loss" in r]
    evals = [r for r in recs if "val" in r]
    best = max(evals, key=lambda r: r["val"]["AP50"])
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    res = ROOT / "benchmarks" / "results"
    res.mkdir(parents=True, exist_ok=True)
    n_val, s_val = synthetic.SCENE_SPLITS["scenes_val"]
    doc = {
        "model": "demo_person_detector",
        "command": args.train_command,
        "seed": args.seed,
        "data": {"train": "edgepose.synthetic.render_scene, seed %d, %d scenes pre-rendered"
                          % (synthetic.SCENE_SPLITS["scenes_train"][1], args.pool_images),
                 "val": "edgepose.synthetic.ensure_scenes('scenes_val') (%d images, seed %d)" % (n_val, s_val)},
        "init": "backbone from edgepose/assets/demo_coco_256x192.pth (strict); conv1..layer3 frozen"
                if args.freeze else "backbone from edgepose/assets/demo_coco_256x192.pth (strict)",
        "hardware": {"cpu": cpu, "logical_cpus": os.cpu_count(), "torch_threads": args.threads,
                     "precision": "bf16 autocast, channels_last" if args.bf16 else "fp32, channels_last",
                     "torch": torch.__version__, "note": "2 cores shared with other jobs (load average 5-10)"},
        "batch_size": args.batch,
        "iterations": max(r["it"] for r in recs),
        "wall_minutes": max(r["min"] for r in recs),
        "mean_train_img_per_s": float(np.mean([r["img_s"] for r in train_recs[1:]] or [0])),
        "final_val": evals[-1]["val"],
        "best_val": best["val"],
        "best_at": {"iteration": best["it"], "minutes": best["min"]},
        "shipped_checkpoint": f"edgepose/assets/demo_person_detector.pth ({args.shipped}, fp16)",
        "val_metric": "COCO box AP (pycocotools COCOeval bbox) through edgepose.detection.PersonDetector "
                      "(letterbox, 3x3 peaks, top 100, score >= %g, NMS IoU 0.6); evals during training on the "
                      "first %s val images, the last on all" % (SPEC.score_threshold, args.eval_images_logged),
        "evals": [{"it": r["it"], "min": r["min"], "AP": r["val"]["AP"], "AP50": r["val"]["AP50"]} for r in evals],
    }  # fmt: skip
    if args.notes:
        doc["notes"] = args.notes
    (res / "detector_training.json").write_text(json.dumps(doc, indent=2) + "\n")
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([r["min"] for r in train_recs], [r["loss"] for r in train_recs], "b-", lw=1)
    ax.set_xlabel("training time (min)")
    ax.set_ylabel("train loss (focal + 0.1 size + offset)", color="b")
    ax.set_yscale("log")
    ax2 = ax.twinx()
    ax2.plot([r["min"] for r in evals], [r["val"]["AP50"] for r in evals], "ro-", label="AP50")
    ax2.plot([r["min"] for r in evals], [r["val"]["AP"] for r in evals], "ms--", label="AP")
    ax2.set_ylabel("val box AP", color="r")
    ax2.set_ylim(0, 1)
    ax2.legend(loc="lower right")
    ax.set_title("demo_person_detector on synthetic scenes (CPU)")
    fig.tight_layout()
    fig.savefig(res / "detector_training.png", dpi=100)
    print(json.dumps({k: doc[k] for k in ("iterations", "wall_minutes", "final_val", "best_val")}, indent=1))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/det")
    p.add_argument("--minutes", type=float, default=75.0, help="wall-clock budget; the LR schedule follows it")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--train-size", type=int, nargs=2, default=[320, 256], metavar=("W", "H"),
                   help="training window (default: the input; smaller = crops at the input's scales, less work per "
                        "image, but large people are seldom whole in them)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rel-wh", type=float, default=1.0, help="weight of the relative box-size L1 (0: CenterNet's only)")
    p.add_argument("--pool-images", type=int, default=3000, help="training scenes rendered up front")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--freeze", action=argparse.BooleanOptionalAction, default=True,
                   help="keep the backbone's conv1..layer3 fixed (default on)")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True, help="bf16 autocast (AMX)")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--ckpt-minutes", type=float, default=3.0)
    p.add_argument("--eval-minutes", type=float, default=8.0)
    p.add_argument("--eval-images", type=int, default=100, help="evaluate on the first N val images during training")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--report", action="store_true", help="only write the results json + png from the log")
    p.add_argument("--eval-images-logged", default="100", help="report: the --eval-images the run used")
    p.add_argument("--notes", help="report: free-text notes")
    p.add_argument("--shipped", default="best.pth", help="report: which checkpoint of the run is bundled")
    p.add_argument("--train-command", default="python tools/train_detector.py --out runs/det --minutes 35")
    args = p.parse_args(argv)
    report(args) if args.report else train(args)


if __name__ == "__main__":
    sys.exit(main())
