"""Train the demo model (``demo_coco_256x192``) on synthetic figures, in plain PyTorch on the CPU.

mmpose's recipe, shortened: box -> centre/scale (padding 1.25) with random scale / rotation / horizontal flip,
affine crop to 256x192, ImageNet normalisation, Gaussian targets (sigma 2) on the 48x64 heatmap, JointsMSELoss
with target weights, Adam with warmup and cosine decay. The schedule runs on wall-clock time (``--minutes``),
so a run ends on time; checkpoints are written every few minutes and the run can resume (``--resume``).

    python tools/train_demo.py --out runs/demo --minutes 55
    python tools/train_demo.py --out runs/demo --report   # write benchmarks/results/demo_training.{json,png}
"""

from __future__ import annotations

import argparse
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

from edgepose import synthetic
from edgepose.checkpoint import save_mmpose_checkpoint
from edgepose.models import build_model
from edgepose.processing import (
    TopDownPipeline,
    box_to_center_scale,
    clean_coco_box,
    get_affine_transform,
    normalize,
    read_image,
)
from edgepose.spec import get_spec

SPEC = get_spec("demo_coco_256x192")
ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------- data
def gaussian_targets(joints: np.ndarray, vis: np.ndarray, heatmap_size, image_size, sigma: float = 2.0):
    """mmpose ``_msra_generate_target`` (unbiased off): integer-centred Gaussians; weight 0 out of the map."""
    w, h = heatmap_size
    k = len(joints)
    target = np.zeros((k, h, w), np.float32)
    weight = (vis > 0).astype(np.float32)
    stride = np.asarray(image_size, np.float32) / np.asarray(heatmap_size, np.float32)
    tmp = sigma * 3
    xs = np.arange(w, dtype=np.float32)[None, :]
    ys = np.arange(h, dtype=np.float32)[:, None]
    for j in range(k):
        mx, my = int(joints[j, 0] / stride[0] + 0.5), int(joints[j, 1] / stride[1] + 0.5)
        if mx - tmp >= w or my - tmp >= h or mx + tmp + 1 < 0 or my + tmp + 1 < 0:
            weight[j] = 0
        if weight[j] > 0:
            g = np.exp(-((xs - mx) ** 2 + (ys - my) ** 2) / (2 * sigma**2))
            g[np.abs(xs - mx).repeat(h, 0) > tmp] = 0
            g[np.abs(ys - my).repeat(w, 1) > tmp] = 0
            target[j] = g
    return target, weight


def make_sample(rng: np.random.Generator, img: np.ndarray, kp: np.ndarray, box: np.ndarray, augment: bool = True):
    """One training crop (normalised CHW float32), its target heatmaps and target weights."""
    w_in, h_in = SPEC.input_size
    center, scale = box_to_center_scale(box[None], w_in / h_in, SPEC.box_padding)
    center, scale = center[0].astype(np.float64), scale[0].astype(np.float64)
    joints = kp[:, :2].copy()
    vis = kp[:, 2].copy()
    rot = 0.0
    if augment:
        if rng.random() < 0.5:  # horizontal flip with left/right swap, as mmpose's TopDownRandomFlip
            img = img[:, ::-1]
            joints[:, 0] = img.shape[1] - 1 - joints[:, 0]
            center[0] = img.shape[1] - 1 - center[0]
            for a, b in SPEC.flip_pairs:
                joints[[a, b]] = joints[[b, a]]
                vis[[a, b]] = vis[[b, a]]
        scale = scale * float(np.clip(rng.normal(1.0, 0.25), 0.75, 1.25))
        if rng.random() < 0.6:
            rot = float(np.clip(rng.normal(0, 15), -30, 30))
    m = get_affine_transform(center, scale, (w_in, h_in), rot)
    crop = cv2.warpAffine(np.ascontiguousarray(img), m, (w_in, h_in), flags=cv2.INTER_LINEAR)
    joints = joints @ m[:, :2].T + m[:, 2]
    vis = np.where((joints[:, 0] >= 0) & (joints[:, 0] < w_in) & (joints[:, 1] >= 0) & (joints[:, 1] < h_in), vis, 0)
    target, weight = gaussian_targets(joints, vis, SPEC.heatmap_size, SPEC.input_size, SPEC.train_sigma)
    x = normalize(crop[None], SPEC.mean, SPEC.std)[0]
    return x, target, weight


def _render(args: tuple[int, int]) -> list:
    """Worker: one rendered image and its usable persons (keypoints, cleaned box)."""
    cv2.setNumThreads(1)
    seed, i = args
    img, persons = synthetic.render_image(np.random.default_rng([seed, i]))
    out = []
    for p in persons:
        box = clean_coco_box(p["bbox"], img.shape[1], img.shape[0])
        if box is not None and (p["keypoints"][:, 2] > 0).sum() >= 3:
            out.append((p["keypoints"].astype(np.float32), box))
    return [(img, out)] if out else []


def render_pool(seed: int, num_images: int, procs: int = 2) -> list:
    """Pre-render training images into memory (the CPU then only crops and trains, nothing starves)."""
    import multiprocessing as mp

    pool: list = []
    with mp.get_context("fork").Pool(procs) as workers:
        for k, item in enumerate(workers.imap(_render, [(seed, i) for i in range(num_images)], chunksize=16)):
            pool.extend(item)
            if (k + 1) % 500 == 0:
                print(f"rendered {k + 1}/{num_images} training images", flush=True)
    return pool


def batches(pool: list, batch: int, rng: np.random.Generator):
    """Endless batches of augmented crops drawn at random from the pre-rendered pool."""
    index = [(i, j) for i, (_, persons) in enumerate(pool) for j in range(len(persons))]
    while True:
        xs, ts, ws = [], [], []
        for k in rng.integers(0, len(index), batch):
            i, j = index[k]
            img, persons = pool[i]
            x, t, w = make_sample(rng, img, *persons[j])
            xs.append(x)
            ts.append(t)
            ws.append(w)
        yield torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ts)), torch.from_numpy(np.stack(ws))


def loss_fn(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """mmpose JointsMSELoss(use_target_weight=True): mean over joints of 0.5 * MSE(pred*w, gt*w)."""
    w = weight[:, :, None, None]
    return 0.5 * torch.mean((pred.float() * w - target * w) ** 2)


# ------------------------------------------------------------------------------------------- eval
def coco_ap(model: torch.nn.Module, ann_path: Path, images_dir: Path, max_images: int | None = None) -> dict:
    """COCO keypoint AP on ground-truth boxes through :class:`TopDownPipeline` (flip test on)."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_path))
    pipe = TopDownPipeline(SPEC)
    model.eval()

    def infer(batch: np.ndarray, chunk: int = 32) -> np.ndarray:
        outs = []
        for k in range(0, len(batch), chunk):  # fixed-size chunks: oneDNN reuses its kernels
            part = batch[k : k + chunk]
            n = len(part)
            if n < chunk:
                part = np.concatenate([part, np.zeros((chunk - n, *part.shape[1:]), part.dtype)])
            x = torch.from_numpy(np.ascontiguousarray(part)).contiguous(memory_format=torch.channels_last)
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                outs.append(model(x).float().numpy()[:n])
        return np.concatenate(outs)

    img_ids = sorted(gt.getImgIds())[:max_images]
    crops, centers, scales, owners = [], [], [], []
    for iid in img_ids:
        info = gt.loadImgs(iid)[0]
        anns = [a for a in gt.loadAnns(gt.getAnnIds(imgIds=iid)) if a["num_keypoints"] > 0]
        boxes = [clean_coco_box(a["bbox"], info["width"], info["height"]) for a in anns]
        boxes = [b for b in boxes if b is not None]
        if not boxes:
            continue
        img = read_image(images_dir / info["file_name"])
        c, s = pipe.boxes_to_center_scale(np.array(boxes))
        crops.append(pipe.preprocess(img, c, s))
        centers.append(c)
        scales.append(s)
        owners += [iid] * len(boxes)
    centers_a, scales_a = np.concatenate(centers), np.concatenate(scales)
    kps = pipe.decode(pipe.forward(infer, np.concatenate(crops)), centers_a, scales_a)
    results = []
    for iid, kp in zip(owners, kps):
        sc = kp[:, 2]
        good = sc > 0.2
        score = float(sc[good].mean()) if good.any() else 0.0
        results.append({"image_id": iid, "category_id": 1, "keypoints": kp.reshape(-1).tolist(), "score": score})
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "keypoints")
        ev.params.kpt_oks_sigmas = np.array(SPEC.info.sigmas)
        ev.params.imgIds = img_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    names = ["AP", "AP50", "AP75", "AP_M", "AP_L", "AR", "AR50", "AR75", "AR_M", "AR_L"]
    return {n: float(v) for n, v in zip(names, ev.stats)}


# ------------------------------------------------------------------------------------------- train
def lr_at(frac: float, base: float, warm: float = 0.03) -> float:
    """Linear warmup over the first ``warm`` of the run, then cosine to 1% of ``base``."""
    if frac < warm:
        return base * (0.05 + 0.95 * frac / warm)
    t = min(1.0, (frac - warm) / (1 - warm))
    return base * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t)))


def train(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = build_model("coco_256x192").init_weights(seed=args.seed).train()
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    it, elapsed, best = 0, 0.0, -1.0
    state_path = out / "state.pt"
    if args.resume and state_path.is_file():
        st = torch.load(state_path, weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        it, elapsed, best = st["it"], st["elapsed"], st.get("best", -1.0)
        print(f"resumed at iteration {it}, {elapsed / 60:.1f} min", flush=True)
    val_ann, val_imgs = synthetic.ensure_split("val")
    tr = time.time()
    pool = render_pool(args.seed + 1000, args.pool_images)
    print(f"training pool: {len(pool)} images, {sum(len(p) for _, p in pool)} persons "
          f"({time.time() - tr:.0f} s)", flush=True)  # fmt: skip
    loader = batches(pool, args.batch, np.random.default_rng([args.seed, it]))
    log = open(out / "log.jsonl", "a")
    budget = args.minutes * 60.0
    t0 = time.time() - elapsed
    last_ckpt = last_eval = time.time()
    running, n_seen, t_it = None, 0, time.time()

    def save(tag: str, ap: float | None = None) -> None:
        meta = {"edgepose": "demo_coco_256x192", "iteration": it, "minutes": round((time.time() - t0) / 60, 2),
                "val_ap": ap, "seed": args.seed}  # fmt: skip
        save_mmpose_checkpoint(model, out / f"{tag}.pth", meta=meta, half=True)
        tmp = out / "state.pt.part"
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "it": it,
                    "elapsed": time.time() - t0, "best": best}, tmp)  # fmt: skip
        os.replace(tmp, state_path)

    def evaluate() -> float:
        nonlocal best
        te = time.time()
        stats = coco_ap(model, val_ann, val_imgs, args.eval_images)
        model.train()
        rec = {"it": it, "min": round((time.time() - t0) / 60, 2), "val": stats, "eval_s": round(time.time() - te, 1)}
        log.write(json.dumps(rec) + "\n")
        log.flush()
        print(f"[eval] it {it} min {rec['min']} AP {stats['AP']:.4f} AP50 {stats['AP50']:.4f} "
              f"({rec['eval_s']} s)", flush=True)  # fmt: skip
        if stats["AP"] > best:
            best = stats["AP"]
            save("best", best)
        return stats["AP"]

    for x, target, weight in loader:
        frac = (time.time() - t0) / budget
        if frac >= 1.0:
            break
        lr = lr_at(frac, args.lr)
        for g in opt.param_groups:
            g["lr"] = lr
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            pred = model(x)
        loss = loss_fn(pred, target, weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        it += 1
        n_seen += len(x)
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        if it % args.log_every == 0:
            dt = time.time() - t_it
            rec = {"it": it, "min": round((time.time() - t0) / 60, 2), "loss": running, "lr": lr,
                   "img_s": n_seen / dt}  # fmt: skip
            log.write(json.dumps(rec) + "\n")
            log.flush()
            print(f"it {it} min {rec['min']:.1f} loss {running:.3e} lr {lr:.2e} {rec['img_s']:.1f} img/s", flush=True)
            n_seen, t_it = 0, time.time()
        if time.time() - last_ckpt > args.ckpt_minutes * 60:
            save("latest")
            last_ckpt = time.time()
        if args.eval_minutes > 0 and time.time() - last_eval > args.eval_minutes * 60:
            evaluate()
            last_eval = time.time()
            t_it, n_seen = time.time(), 0
    save("latest")
    evaluate()
    log.close()
    print("done", flush=True)


# ------------------------------------------------------------------------------------------- report
def report(args) -> None:
    """Write benchmarks/results/demo_training.json and the loss/AP curve PNG from the run's log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(args.out)
    recs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if line.strip()]
    train_recs = [r for r in recs if "loss" in r]
    evals = [r for r in recs if "val" in r]
    best = max(evals, key=lambda r: r["val"]["AP"])
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    res = ROOT / "benchmarks" / "results"
    res.mkdir(parents=True, exist_ok=True)
    doc = {
        "model": "demo_coco_256x192",
        "command": args.train_command,
        "seed": args.seed,
        "data": {"train": "edgepose.synthetic.render_image stream, seed %d" % args.seed,
                 "val": "edgepose.synthetic.ensure_split('val') (%d images, seed %d)" % synthetic.SPLITS["val"]},
        "hardware": {"cpu": cpu, "logical_cpus": os.cpu_count(), "torch_threads": args.threads,
                     "precision": "bf16 autocast, channels_last", "torch": torch.__version__},
        "batch_size": args.batch,
        "iterations": max(r["it"] for r in recs),
        "wall_minutes": max(r["min"] for r in recs),
        "mean_train_img_per_s": float(np.mean([r["img_s"] for r in train_recs[1:]] or [0])),
        "final_val": evals[-1]["val"],
        "best_val": best["val"],
        "best_at": {"iteration": best["it"], "minutes": best["min"]},
        "shipped_checkpoint": "edgepose/assets/demo_coco_256x192.pth (best.pth, fp16)",
        "val_metric": "COCO keypoint AP (pycocotools, COCO sigmas), ground-truth boxes, flip test on",
        "evals": [{"it": r["it"], "min": r["min"], "AP": r["val"]["AP"]} for r in evals],
    }  # fmt: skip
    if args.official_eval:
        doc["official_eval"] = {
            "command": "edgepose eval --model demo_coco_256x192 --out <file>  (shipped fp16 weights, fp32 inference)",
            "metrics": json.loads(Path(args.official_eval).read_text()).get("metrics"),
        }
    if args.notes:
        doc["notes"] = args.notes
    (res / "demo_training.json").write_text(json.dumps(doc, indent=2) + "\n")
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([r["min"] for r in train_recs], [r["loss"] for r in train_recs], "b-", lw=1)
    ax.set_xlabel("training time (min)")
    ax.set_ylabel("train loss (JointsMSE)", color="b")
    ax.set_yscale("log")
    ax2 = ax.twinx()
    ax2.plot([r["min"] for r in evals], [r["val"]["AP"] for r in evals], "ro-")
    ax2.set_ylabel("val COCO AP", color="r")
    ax2.set_ylim(0, 1)
    ax.set_title("demo_coco_256x192 on synthetic figures (CPU)")
    fig.tight_layout()
    fig.savefig(res / "demo_training.png", dpi=100)
    print(json.dumps({k: doc[k] for k in ("iterations", "wall_minutes", "final_val", "best_val")}, indent=1))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--minutes", type=float, default=55.0, help="wall-clock budget; the LR schedule follows it")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--pool-images", type=int, default=5000, help="training images rendered up front")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--ckpt-minutes", type=float, default=4.0)
    p.add_argument("--eval-minutes", type=float, default=12.0)
    p.add_argument("--eval-images", type=int, default=None, help="evaluate on the first N val images only")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--report", action="store_true", help="only write the results json + png from the log")
    p.add_argument("--official-eval", help="report: metrics JSON written by `edgepose eval` for the shipped weights")
    p.add_argument("--notes", help="report: free-text notes")
    p.add_argument("--train-command", default="python tools/train_demo.py --out runs/demo --minutes 55")
    args = p.parse_args(argv)
    report(args) if args.report else train(args)


if __name__ == "__main__":
    sys.exit(main())
