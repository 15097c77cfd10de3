"""``edgepose bench``: every artifact's accuracy drop, latency, throughput, size and memory on this machine."""

from __future__ import annotations

import sys

from ._args import (
    THREADS_HELP,
    key_value,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    sha256_arg,
    threads,
)


def register(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="accuracy and speed of every artifact, side by side, on this machine",
        description="Bench the PyTorch FP32 original and every artifact of a model: accuracy (with the drop "
        "against PyTorch), load time, first inference, p50/p90/p99 latency and throughput of the model alone "
        "and of the per-person pipeline (with and without flip test), file size and peak memory. "
        "Exit status 0 when at least one artifact ran, 1 when every artifact failed, 2 for bad input.",
    )
    p.add_argument("--model", help="zoo model name (default: the one the artifacts name, else the demo model)")
    p.add_argument(
        "--artifacts",
        nargs="+",
        metavar="DIR|FILE",
        help="artifact files and/or directories (default: artifacts/<model>/ from edgepose convert)",
    )
    ref = p.add_mutually_exclusive_group()
    ref.add_argument("--reference", metavar="PTH", help="PyTorch checkpoint for the reference row (default: the "
                     "model's own)")  # fmt: skip
    ref.add_argument("--no-reference", action="store_true", help="no PyTorch reference row")
    sha256_arg(p, "--reference")
    p.add_argument("--dataset", help="dataset format of --ann (default: the model's: coco, mpii, onehand10k, ...)")
    p.add_argument("--ann", help="annotation file (default for the demo model: the synthetic val split)")
    p.add_argument("--images", help="image directory of --ann")
    p.add_argument("--bbox-file", help="person detections (COCO results JSON) instead of ground-truth boxes")
    p.add_argument("--limit", type=positive_int, metavar="N",
                   help="evaluate on the first N images only, N >= 1 (COCO-format files)")
    p.add_argument("--no-accuracy", action="store_true", help="speed, size and memory only")
    p.add_argument("--no-flip", action="store_true", help="evaluate accuracy without flip test (timing has both)")
    p.add_argument("--threads", type=threads, help=THREADS_HELP)
    p.add_argument("--runs", type=positive_int, default=100, help="timed runs per measurement (default 100)")
    p.add_argument("--warmup", type=non_negative_int, default=10, help="untimed warm-up runs before them (default 10)")
    p.add_argument("--batch", type=positive_int, default=1, help="persons per inference call in the timing (default 1)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N, tensorrt (onnxruntime) or gpu "
                   "(openvino); fails at once when this machine has no such device")  # fmt: skip
    p.add_argument("--allow-fallback", action="store_true", help="run on CPU when --device is missing, saying so "
                   "in the output and in each row")  # fmt: skip
    p.add_argument("--batch-sizes", metavar="B,B,...", help="also time batched inference at these batch sizes "
                   "(e.g. 1,8,32,128): latency per batch, crops/s, pre/post share")  # fmt: skip
    p.add_argument("--max-drop", type=non_negative_float, metavar="X",
                   help="largest accepted accuracy drop, absolute, for every "
                   "precision (default 0.01 for FP32/FP16 and 0.03 for INT8)")  # fmt: skip
    p.add_argument("--strict-precision", action="store_true", help="also bench each artifact whose engine chose a "
                   "lower float precision than float32 by default (OpenVINO: bf16 on AMX/AVX512-BF16 CPUs) with "
                   "float32 forced, as an extra row (default rows show what the engine does by default)")  # fmt: skip
    f = p.add_argument_group("the app's frame loop (edgepose bench --frames; see edgepose run)")
    f.add_argument("--frames", action="store_true", help="after the rows, bench the frame loop per engine pair: "
                   "detector ms, pose ms for P persons in one call and one by one, tracking, drawing, frame ms, FPS "
                   "with --det-every 1 and K, keypoint AP and identity switches on a synthetic 3-person video "
                   "(add --no-accuracy to skip the accuracy rows)")  # fmt: skip
    f.add_argument("--detector", nargs="+", metavar="DET", default=[], help="--frames: person detector artifacts "
                   "(demo_person_detector .onnx/.tflite/.xml); each pose artifact runs with the one of its engine "
                   "(default: the PyTorch demo_person_detector)")  # fmt: skip
    f.add_argument("--persons", default="1,3,6", metavar="P,P,...", help="--frames: persons per frame for the "
                   "batched against one-by-one pose timing (default 1,3,6; at most 6)")  # fmt: skip
    f.add_argument("--det-every", type=positive_int, default=5, metavar="K", help="--frames: the K compared with "
                   "--det-every 1 (default 5)")  # fmt: skip
    f.add_argument("--frame-count", type=positive_int, default=40, metavar="N", help="--frames: frames of the "
                   "synthetic video (default 40)")  # fmt: skip
    p.add_argument("--json", dest="json_out", metavar="OUT", help="write every number and the machine as JSON")
    p.add_argument("--markdown", metavar="OUT", help="write the table and the machine as Markdown")
    p.add_argument("--plot", metavar="OUT.png", help="plot accuracy against latency (needs matplotlib)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.add_argument("--ray", nargs="?", const="", metavar="ADDRESS", help="accuracy rows as Ray jobs on a cluster "
                   "(ADDRESS, or none for RAY_ADDRESS / a local instance); timing stays here, one row at a time "
                   "(pip install 'edgepose[scale]')")  # fmt: skip
    p.add_argument("--ray-ship-crops", action="store_true", help="with --ray: ship crops from here instead of "
                   "workers reading the images (a path every node must see)")  # fmt: skip
    r = p.add_argument_group("remote devices (over SSH; see docs/raspberry-pi.md)")
    r.add_argument("--remote", action="append", metavar="[ssh://][USER@]HOST[:PORT]", help="also bench on this "
                   "machine over SSH (a ~/.ssh/config alias works; repeat for several): edgepose[lite] in a venv "
                   "there, the artifacts it can run and the evaluation data copied and checked by sha256, the rows "
                   "added to the report with accuracy deltas against the reference measured here")  # fmt: skip
    r.add_argument("--remote-python", metavar="PATH", help="use this Python on the remote (it must have "
                   "edgepose[lite]) instead of the venv that edgepose makes and keeps there")  # fmt: skip
    r.add_argument("--remote-dir", metavar="DIR", default="~/.cache/edgepose-remote", help="remote folder for the "
                   "venv (kept for the next run) and the run's temporary folder (removed at the end); default "
                   "~/.cache/edgepose-remote")  # fmt: skip
    r.add_argument("--ssh-config", metavar="FILE", help="ssh client configuration file (ssh -F)")
    r.add_argument("--ssh-option", action="append", default=[], type=key_value, metavar="KEY=VALUE",
                   help="ssh -o option (repeatable); BatchMode=yes is always set: no password prompts")  # fmt: skip
    r.add_argument("--remote-timeout", type=positive_float, default=3600, metavar="S", help="seconds the remote bench "
                   "may take per host (default 3600)")  # fmt: skip
    p.set_defaults(handler=run)


def run(args) -> int:
    from pathlib import Path

    from ..bench import BenchConfig, BenchInterrupted, run_bench
    from ..bench.batch import parse_batch_sizes, sweep_table
    from ..bench.data import discover_artifacts
    from ..bench.report import console_table
    from ..errors import EdgeposeError
    from ..files import check_distinct, check_writable
    from ..runtimes.artifact import artifact_inputs
    from ..runtimes.devices import require_device

    if args.remote:  # the arguments themselves first, before any file is looked at
        from ..bench.remote import check_targets

        check_targets(args.remote)  # a malformed --remote fails now, not after the local bench
        if args.ssh_config and not Path(args.ssh_config).expanduser().is_file():
            raise EdgeposeError(f"--ssh-config {args.ssh_config}: file not found")
    outputs = (("--json", args.json_out), ("--markdown", args.markdown), ("--plot", args.plot))
    for what, path in outputs:
        check_writable(path, what)
    arts = discover_artifacts(args.artifacts) if args.artifacts else []
    frames = _frames_options(args)
    check_distinct(outputs, [("--ann", args.ann), ("--bbox-file", args.bbox_file), ("--reference", args.reference),
                             *(x for a in arts for x in artifact_inputs(a, "artifact"))])  # fmt: skip
    if args.sha256 and args.no_reference:
        raise EdgeposeError("--sha256 checks the --reference checkpoint; it makes no sense with --no-reference")
    if args.sha256 and args.reference:  # a wrong reference fails now, not in its row at the end
        from ..checkpoint import resolve_checkpoint

        resolve_checkpoint(args.reference, progress=not args.quiet, sha256=args.sha256)

    choice = require_device(args.device, args.allow_fallback)  # one line, exit 2, for a missing device
    if choice.fallback:
        print(f"edgepose: --device {choice.requested}: {choice.fallback}; running on CPU (--allow-fallback)",
              file=sys.stderr)  # fmt: skip
    cfg = BenchConfig(
        model=args.model,
        artifacts=args.artifacts or (),
        reference="" if args.no_reference else args.reference,
        reference_sha256=args.sha256,
        dataset=args.dataset,
        ann=args.ann,
        images=args.images,
        bbox_file=args.bbox_file,
        limit=args.limit,
        accuracy=not args.no_accuracy,
        flip_test=not args.no_flip,
        threads=args.threads,
        runs=args.runs,
        warmup=args.warmup,
        batch=args.batch,
        max_drop=args.max_drop,
        device=choice.requested,
        allow_fallback=args.allow_fallback,
        batch_sizes=parse_batch_sizes(args.batch_sizes),
        strict_precision=args.strict_precision,
        progress=not args.quiet,
        ray=args.ray,
        ray_ship_crops=args.ray_ship_crops,
        frames=frames,
    )
    from ..bench.run import bench_spec

    spec = bench_spec(cfg)
    if spec.task == "detection":
        return _detector(args, cfg, spec)
    try:
        report = run_bench(cfg)
    except BenchInterrupted as e:  # Ctrl-C or SIGTERM after a row finished: those rows are written, as --remote does
        data = e.report.to_dict()
        print(console_table(data))
        _write(args, data)
        raise
    data = report.to_dict()
    print(console_table(data))
    if args.batch_sizes:
        print(sweep_table(data))
    if frames is not None:
        data["frames"] = _frames(data, frames, args)
    remote_failed = False
    if args.remote:
        try:
            remote_failed = _remotes(args, cfg, data)
        except KeyboardInterrupt:
            data["notes"].append("interrupted during the remote benches: the rows that finished are kept")
            _write(args, data)
            raise
    _write(args, data)
    if args.plot:
        from ..bench.plot import write_plot

        skipped = write_plot(data, args.plot)
        print(skipped or f"wrote {args.plot}", file=sys.stderr)
    if report.all_failed:
        print("edgepose: every artifact failed", file=sys.stderr)
        return 1
    if remote_failed:
        print("edgepose: a remote host failed (its line is above); the rows that finished are in the report",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


def _detector(args, cfg, spec) -> int:
    """A person detector's rows (edgepose.bench.detector); the det + pose pair per engine is --frames'."""
    import json

    from ..bench.detector import bench_detector, detector_markdown, detector_table
    from ..errors import EdgeposeError
    from ..files import atomic_write

    for flag, given in (("--frames", args.frames), ("--remote", args.remote), ("--ray", args.ray is not None),
                        ("--batch-sizes", args.batch_sizes), ("--strict-precision", args.strict_precision)):
        if given:
            raise EdgeposeError(f"{flag} is not offered for a detector ({spec.name}): bench its rows alone, or "
                                "the det + pose pair with the pose artifacts and --frames --detector")  # fmt: skip
    data = bench_detector(cfg, spec)
    print(f"{spec.name} on {data['machine'].get('cpu', '?')}, {cfg.threads} thread(s); box AP on "
          f"{data['config']['data']}")  # fmt: skip
    print(detector_table(data))
    if args.json_out:
        atomic_write(args.json_out, json.dumps(data, indent=1) + "\n")
        print(f"wrote {args.json_out}", file=sys.stderr)
    if args.markdown:
        atomic_write(args.markdown, detector_markdown(data))
        print(f"wrote {args.markdown}", file=sys.stderr)
    return 1 if all(r["status"] != "ok" for r in data["rows"] if not r["reference"]) else 0


def _frames_options(args) -> dict | None:
    """``--frames``' settings, checked before any work (``None`` without ``--frames``)."""
    from pathlib import Path

    from ..errors import EdgeposeError
    from ..runtimes.artifact import artifact_inputs

    if not args.frames:
        if args.detector:
            raise EdgeposeError("--detector is a --frames option: add --frames")
        return None
    try:
        persons = sorted({int(x) for x in args.persons.split(",") if x.strip()})
    except ValueError:
        raise EdgeposeError(f"--persons {args.persons!r}: give counts like 1,3,6") from None
    if not persons or persons[0] < 1 or persons[-1] > 6:
        raise EdgeposeError(f"--persons {args.persons!r}: counts from 1 to 6 (the synthetic frame holds 6 persons)")
    if args.det_every < 2:
        raise EdgeposeError(f"--det-every {args.det_every}: the frame bench compares K with 1; give K >= 2")
    from ..bench.frames import check_detector

    for d in args.detector:
        if not Path(d).is_file():
            raise EdgeposeError(f"--detector {d}: file not found")
        artifact_inputs(d, "--detector")  # a missing companion (.bin) fails now, naming it
        check_detector(Path(d))
    return {"detectors": list(args.detector), "persons": persons, "det_every": args.det_every,
            "frame_count": args.frame_count}  # fmt: skip


def _frames(data: dict, frames: dict, args) -> dict:
    from ..bench.frames import FrameBenchConfig, bench_frames, frames_table

    pose = list(dict.fromkeys(r["path"] for r in data["rows"] if r.get("status") == "ok" and not r.get("reference")
                              and not r.get("runtime_options")))  # fmt: skip
    cfg = FrameBenchConfig(persons=tuple(frames["persons"]), frames=frames["frame_count"], rounds=min(5, args.runs),
                           det_every=frames["det_every"], threads=args.threads, flip_test=not args.no_flip,
                           progress=not args.quiet)  # fmt: skip
    out = bench_frames(pose, frames["detectors"], cfg)
    print()
    print("Frame loop per engine pair (ms are medians; pose: TopDownPipeline, crops + both flip passes + decoding):")
    print(frames_table(out))
    return out


def _remotes(args, cfg, data: dict) -> bool:
    """Bench on each --remote host; print the device table; True when a host failed."""
    from ..bench.remote import RemoteOptions, bench_remotes, console_devices

    opts = RemoteOptions(targets=args.remote, python=args.remote_python, directory=args.remote_dir,
                         ssh_config=args.ssh_config, ssh_options=args.ssh_option, threads=args.threads,
                         timeout=args.remote_timeout, progress=not args.quiet)  # fmt: skip
    entries = bench_remotes(data, cfg, opts)
    print()
    print(console_devices(data))
    if cfg.frames is not None:
        from ..bench.frames import frames_table

        for e in entries:
            if e.get("frames"):
                print(f"\nFrame loop on {e['target']} ({e.get('label', '')}):")
                print(frames_table(e["frames"]))
    return any(e["status"] != "ok" or (e["rows"] and all(r["status"] != "ok" for r in e["rows"])) for e in entries)


def _write(args, data: dict) -> None:
    from ..bench.report import markdown, write_json
    from ..files import atomic_write

    if args.json_out:
        write_json(data, args.json_out)
        print(f"wrote {args.json_out}", file=sys.stderr)
    if args.markdown:
        text = markdown(data)
        if data.get("remotes"):
            from ..bench.remote import markdown_devices

            text += "\n" + markdown_devices(data)
        if data.get("frames") or any(e.get("frames") for e in data.get("remotes") or []):
            from ..bench.frames import frames_table

            for where, fr in [("this machine", data.get("frames")),
                              *((e["target"], e.get("frames")) for e in data.get("remotes") or [])]:  # fmt: skip
                if fr:
                    text += f"\n### Frame loop on {where}\n\n{frames_table(fr, markdown=True)}\n"
        atomic_write(args.markdown, text)
        print(f"wrote {args.markdown}", file=sys.stderr)
