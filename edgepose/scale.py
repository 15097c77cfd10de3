"""Evaluation past one machine, on Ray: the dataset in shards over Ray actors, gathered by key, scored once.

A *job* is one model file (an artifact or a checkpoint) over one evaluation set; :func:`run_jobs` runs one job
(``edgepose eval --ray``) or several at once (the accuracy grid of ``edgepose bench --ray``). Each actor opens
its model once, from bytes the driver put in Ray's object store (no shared filesystem needed for the model),
with its own engine thread count, and runs shards through :func:`edgepose.pipelined.predict_items`.
(Over 400 lines: sharding, the actors, retries and gathering are one protocol, read top to bottom.)

* **Shards** are runs of whole batches of the single-process plan (crops of consecutive images sharing
  batches of ``batch_size``, in dataset order), so every batch holds the very crops it holds in
  ``edgepose eval``: with the same engine, thread count and CPU the keypoints are bit-identical and so are
  the metrics. An image whose crops straddle two shards is read by both.
* **Data**: workers read the images from the path the driver sees (a path every node mounts: NFS, a
  cluster filesystem), or with ``ship_crops`` the driver reads and crops and ships the uint8 crops through
  the object store (~147 KB per 192x256 crop), so workers need no dataset at all.
* **Faults**: actors are created with ``max_restarts`` and ``max_task_retries``: a worker process that dies
  is restarted by Ray (its model opened again) and its shard re-run. An actor that is gone for good is
  replaced (at most ``retries`` times per job) and its shards given to the others. Results are kept by shard
  key: a shard run twice counts once, and the driver checks that every sample came back exactly once.

Ray is imported only here, only when a function needs it (``pip install 'edgepose[scale]'``).

(~450 lines: the driver's scheduler, its per-job book-keeping and the crop shipper share one loop's state and
are read together; the worker side is the small ``Worker`` class.)
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EdgeposeError
from .evaluate import EvalOptions, Progress, check_dataset, result_for
from .files import staging_dir
from .pipelined import Facts, Item, batch_bounds, crops_of, predict_items
from .processing import TopDownPipeline, input_kind_of
from .spec import ModelSpec

__all__ = ["RayOptions", "Job", "Shard", "connect", "model_files", "shard_plan", "run_jobs", "evaluate_on_ray",
           "open_model_files"]  # fmt: skip

log = logging.getLogger(__name__)


@dataclass
class RayOptions:
    address: str | None = None  # None: RAY_ADDRESS, else a running local instance, else a new local one
    actors: int | None = None  # actors per job; None: the cluster's CPUs // threads (GPUs // num_gpus), split
    threads: int = 1  # engine threads (and Ray CPUs) per actor
    workers: int | None = None  # pipeline threads per actor (reading, cropping, decoding); None: threads
    ship_crops: bool = False  # the driver crops and ships uint8 crops (workers need no image folder)
    shard_batches: int | None = None  # batches per shard; None: ~4 shards per actor, at most 32 batches
    retries: int = 3  # Ray actor restarts and task retries; then actor replacements per job
    device: str = "cpu"
    allow_fallback: bool = False
    num_gpus: float | None = None  # per actor; None: 1 for a device other than cpu, else 0
    progress: bool = True
    depth: int = 2  # shards in flight per actor
    init: dict[str, Any] = field(default_factory=dict)  # extra ray.init arguments when a new instance starts
    fail_soft: bool = False  # a job that fails (model unreadable, bad input) ends alone; the others go on
    on_result: Callable[[Any], None] | None = None  # called after each finished shard (tests, dashboards)


@dataclass
class Job:
    """One model over one plan of items (:func:`edgepose.pipelined.plan_items`)."""

    spec: ModelSpec
    model: dict[str, Any]  # model_files(): {"name", "files" (name -> bytes), "engine", "options"}
    items: list[Item]
    num_samples: int
    batch_size: int = 16
    flip_test: bool = True
    decoder: str = "default"
    label: str = ""


@dataclass
class Shard:
    key: int
    items: list[Item]

    @property
    def size(self) -> int:
        return sum(len(it) for it in self.items)


def _ray():
    try:
        import ray
    except ImportError:
        raise EdgeposeError("--ray needs Ray: pip install 'edgepose[scale]' (or pip install ray)") from None
    return ray


RAY_CONNECT_TIMEOUT = 5.0  # seconds to wait for a TCP answer from --ray HOST:PORT


def _check_reachable(address: str | None) -> None:
    """Fail in seconds when ``address`` names a host and port where nothing answers: ``ray.init`` would rewrite
    the address and retry for minutes. ``auto``, ``local``, none and unparsable forms are left to Ray."""
    if not address or address in ("auto", "local"):
        return
    target = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return
    host = host.strip("[]") or "127.0.0.1"
    try:
        with socket.create_connection((host, int(port)), timeout=RAY_CONNECT_TIMEOUT):
            pass
    except OSError as e:
        why = e.strerror or ("no answer in %g s" % RAY_CONNECT_TIMEOUT if isinstance(e, TimeoutError) else str(e))
        raise EdgeposeError(f"--ray {address}: nothing answers at {host}:{port} ({why}); is the Ray head "
                            "running there?") from None  # fmt: skip


def connect(address: str | None = None, **init: Any):
    """The ``ray`` module, connected: to ``address``, else as ``ray.init()`` resolves it (``RAY_ADDRESS``, a
    running local instance, else a new local one); an already initialised Ray is used as it is."""
    ray = _ray()
    _check_reachable(address)
    if ray.is_initialized():
        return ray
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    kwargs.update(init)
    try:
        ray.init(address=address or None, **kwargs)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise EdgeposeError(f"--ray {address or ''}: cannot start or reach Ray ({str(e).splitlines()[0]})") from None
    return ray


def model_files(path: str | Path, engine: str | None = None, **options: Any) -> dict[str, Any]:
    """The files of a model (an artifact with its companions and metadata sidecar, or a checkpoint), read into
    memory for the workers, with the engine and runtime options that open it."""
    from .runtimes import RUNTIMES, engine_for
    from .runtimes.artifact import sidecar_path

    path = Path(path)
    engine = engine or engine_for(path)
    files = RUNTIMES[engine].files(path) if engine in RUNTIMES else [path]
    if sidecar_path(path).is_file():
        files.append(sidecar_path(path))
    try:
        data = {f.name: f.read_bytes() for f in files}
    except OSError as e:
        raise EdgeposeError(f"{path}: cannot read the model file ({e})") from None
    return {"name": path.name, "files": data, "engine": engine, "options": options, "path": str(path)}


def open_model_files(model: str | None, checkpoint: str | None, artifact: str | None) -> tuple[ModelSpec, dict]:
    """(spec, model files) as :func:`edgepose.runtimes.open.open_model` would open them, without loading an
    engine on the driver: the artifact's own metadata names its model; a checkpoint is resolved (downloaded and
    hash-checked) here once, and shipped."""
    from .spec import DEFAULT_MODEL, get_spec, spec_for_artifact

    if artifact:
        from .runtimes.artifact import read_metadata

        if not Path(artifact).exists():
            raise EdgeposeError(f"{artifact}: artifact not found")
        meta = read_metadata(artifact)
        spec = spec_for_artifact(model, meta, artifact)
        return spec, model_files(artifact)
    from .checkpoint import resolve_checkpoint

    spec = get_spec(model or DEFAULT_MODEL)
    source = checkpoint or spec.checkpoint
    return spec, model_files(resolve_checkpoint(source), engine="torch", model=spec.name, source=source)


def evaluate_on_ray(spec: ModelSpec, model: dict[str, Any], ds: Any, opts: RayOptions,
                    options: EvalOptions | None = None, **fields: Any):  # fmt: skip
    """:func:`edgepose.evaluate.evaluate_dataset` with the predictions made on Ray; scored here, once. Of the
    :class:`~edgepose.evaluate.EvalOptions` (``options`` or its fields by name), flip test, batch size and
    detection threshold apply; where and how the workers run is ``opts``."""
    from .pipelined import plan_items

    eval_opts = EvalOptions.of(options, **fields)
    check_dataset(spec, ds)
    centers = np.stack([s.center for s in ds.samples]).astype(np.float32)
    scales = np.stack([s.scale for s in ds.samples]).astype(np.float32)
    job = Job(spec, model, plan_items(ds.samples, centers, scales), len(ds.samples), eval_opts.batch_size,
              eval_opts.flip_test, label=model["name"])  # fmt: skip
    [(keypoints, info)] = run_jobs([job], opts)
    return result_for(spec, ds, keypoints, eval_opts, info)


def shard_plan(items: Sequence[Item], batch_size: int, shard_batches: int) -> list[Shard]:
    """Shards of ``shard_batches`` whole batches each over ``items`` (the last shard takes the rest): cut at
    batch boundaries of the single-process plan, so each shard's batches are that plan's batches."""
    if batch_size < 1 or shard_batches < 1:
        raise EdgeposeError("batch size and batches per shard must be at least 1")
    sizes = [len(it) for it in items]
    n = sum(sizes)
    step = batch_size * shard_batches
    shards: list[Shard] = []
    j, at = 0, 0  # current item, crops of it already given out
    for lo, hi in batch_bounds(n, step):
        want, parts = hi - lo, []
        while want:
            it = items[j]
            take = min(want, sizes[j] - at)
            sl = slice(at, at + take)
            src = it.source if not isinstance(it.source, np.ndarray) else it.source[sl]
            parts.append(Item(src, it.indices[sl], it.centers[sl], it.scales[sl]))
            want -= take
            at += take
            if at == sizes[j]:
                j, at = j + 1, 0
        shards.append(Shard(len(shards), parts))
    return shards


class Worker:
    """A Ray actor: opens one model once, then runs shards (``edgepose.scale.Worker`` on every node)."""

    def __init__(self, spec: ModelSpec, model: dict[str, Any], threads: int, device: str, allow_fallback: bool,
                 flip_test: bool, decoder: str, batch_size: int, workers: int):  # fmt: skip
        from .runtimes import load_runtime

        # The model's files live only while the engine loads them: every engine holds the model in memory (or
        # maps the file, which outlives its name), and Ray ends an actor with SIGKILL, which runs no cleanup. A
        # folder left by an actor killed while loading is removed by the next worker on this host.
        work = staging_dir(tempfile.gettempdir(), "edgepose-ray")
        try:
            for name, data in model["files"].items():
                Path(work, name).write_bytes(data)
            self.rt = load_runtime(work / model["name"], engine=model["engine"], threads=threads, device=device,
                                   allow_fallback=allow_fallback, **model["options"])  # fmt: skip
        finally:
            shutil.rmtree(work, ignore_errors=True)
        self.pipe = TopDownPipeline(spec, flip_test=flip_test, decoder=decoder, input_kind=input_kind_of(self.rt))
        self.batch_size, self.workers = batch_size, workers

    def info(self) -> dict[str, Any]:
        info = self.rt.info() if hasattr(self.rt, "info") else {}
        return {"host": socket.gethostname(), "pid": os.getpid(), "runtime": info}

    def run(self, key: int, items: list[Item], crops: list[np.ndarray] | None = None) -> tuple:
        if crops is not None:
            items = [Item(c, it.indices, it.centers, it.scales) for it, c in zip(items, crops)]
        facts = Facts()
        kp = predict_items(self.pipe, self.rt, items, self.batch_size, workers=self.workers, facts=facts)
        return key, kp, {**self.info(), **facts.to_dict()}


def _cause(e: BaseException) -> str:
    """One line for a worker's error: the EdgeposeError's own message where there is one."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, EdgeposeError):
        return str(cause)
    text = str(e)
    for line in text.splitlines():
        if "EdgeposeError: " in line:
            return line.split("EdgeposeError: ", 1)[1].strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return (lines[-1] if lines else type(e).__name__)[:300]


def run_jobs(jobs: Sequence[Job], opts: RayOptions) -> list[tuple[np.ndarray, dict[str, Any]]]:
    """For each job, keypoints ``(num_samples, K, 3)`` in sample order and what ran (nodes, actors, shards); with
    ``fail_soft`` a failed job gives ``(None, {"error": ...})`` and the others go on."""
    if opts.threads < 1:
        raise EdgeposeError(f"--threads {opts.threads}: must be at least 1")
    ray = connect(opts.address, **opts.init)
    res = ray.cluster_resources()
    num_gpus = opts.num_gpus if opts.num_gpus is not None else (0 if opts.device == "cpu" else 1)
    if num_gpus and res.get("GPU", 0) < num_gpus:
        raise EdgeposeError(f"--device {opts.device}: the Ray cluster has no GPU to place workers on "
                            f"(resources: {int(res.get('CPU', 0))} CPU, {res.get('GPU', 0):g} GPU)")  # fmt: skip
    slots = max(1, int(res.get("CPU", 1) // opts.threads))
    if num_gpus:
        slots = min(slots, max(1, int(res.get("GPU", 0) // num_gpus)))
    per_job = opts.actors or max(1, slots // len(jobs))
    remote = ray.remote(Worker).options(num_cpus=opts.threads, num_gpus=num_gpus, max_restarts=opts.retries,
                                        max_task_retries=opts.retries)  # fmt: skip
    workers = opts.threads if opts.workers is None else opts.workers
    runs = []
    for job in jobs:
        n_batches = -(-sum(len(it) for it in job.items) // job.batch_size)
        sb = opts.shard_batches or max(1, min(32, n_batches // (4 * per_job)))
        args = (job.spec, ray.put(job.model), opts.threads, opts.device, opts.allow_fallback, job.flip_test,
                job.decoder, job.batch_size, workers)  # fmt: skip
        shards = shard_plan(job.items, job.batch_size, sb)
        runs.append(_JobRun(job, args, shards, sb, [{"actor": remote.remote(*args), "load": 0}
                                                    for _ in range(per_job)]))  # fmt: skip
    bar = Progress(sum(r.total for r in runs), opts.progress, "ray eval")
    shipper = _Shipper(ray, len(runs)) if opts.ship_crops else None
    inflight: dict[Any, tuple[_JobRun, dict, Any, Shard]] = {}

    def dispatch() -> None:
        for r in runs:
            for slot in r.slots:
                while slot["actor"] is not None and slot["load"] < opts.depth and r.pending:
                    shard = r.pending.popleft()
                    meta = [Item(None if shipper else it.source, it.indices, it.centers, it.scales)
                            for it in shard.items]  # fmt: skip
                    crops = shipper.ref(r, shard) if shipper else None
                    inflight[slot["actor"].run.remote(shard.key, meta, crops)] = (r, slot, slot["actor"], shard)
                    slot["load"] += 1
            if r.pending and not any(slot["actor"] is not None for slot in r.slots):
                fail(r, f"every Ray worker of {r.job.label or 'the job'} is gone; its shards cannot run")
            if shipper:
                shipper.ahead(r, 2 * len(r.slots))

    def stop(r: _JobRun) -> None:  # free the job's CPUs/GPUs for jobs waiting for them
        for s in r.slots:
            if s["actor"] is not None:
                ray.kill(s["actor"])
            s["actor"] = None

    def fail(r: _JobRun, message: str) -> None:
        if not opts.fail_soft:
            raise EdgeposeError(message)
        r.error = r.error or message
        r.pending.clear()
        stop(r)
        for ref in [ref for ref, v in inflight.items() if v[0] is r]:
            inflight.pop(ref)

    try:
        while inflight or any(r.pending for r in runs):
            dispatch()
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
            for ref in ready:
                if ref not in inflight:
                    continue  # its job failed meanwhile
                r, slot, actor, shard = inflight.pop(ref)
                slot["load"] -= 1
                try:
                    key, kp, facts = ray.get(ref)
                except ray.exceptions.RayTaskError as e:  # the worker's own code raised: bad input, not a fault
                    fail(r, _cause(e))
                    continue
                except ray.exceptions.RayError as e:
                    if isinstance(e, ray.exceptions.RayActorError) and e.actor_init_failed:
                        fail(r, f"Ray worker cannot open {r.job.model['name']}: {_cause(e)}")
                        continue
                    if not r.retry(shard, e, opts.retries):
                        fail(r, f"Ray workers keep failing on {r.job.label or 'the job'}: {_cause(e)}")
                        continue
                    if isinstance(e, ray.exceptions.ActorDiedError) and slot["actor"] is actor:
                        slot["actor"], slot["load"] = None, 0  # gone for good (restarts used up or killed)
                        if r.replaced < opts.retries:
                            r.replaced += 1
                            r.slots[r.slots.index(slot)] = {"actor": remote.remote(*r.args), "load": 0}
                    continue
                if not r.done(key, kp, facts, shard):
                    continue
                if shipper:
                    shipper.release(r, shard)
                bar.update(shard.size)
                if opts.on_result is not None:
                    opts.on_result({"job": r.job, "shard": key, "actor": actor, "pid": facts["pid"],
                                    "actors": [s["actor"] for s in r.slots]})  # fmt: skip
                if len(r.results) == len(r.shards):
                    stop(r)
    finally:
        bar.close()
        if shipper:
            shipper.close()
        for r in runs:
            for s in r.slots:
                if s["actor"] is not None:
                    ray.kill(s["actor"])
    address = ray.get_runtime_context().gcs_address
    return [r.gather(per_job, address, bool(shipper), opts.threads) for r in runs]


class _JobRun:
    """The driver's book-keeping for one job: its actor slots, shards to run, results by shard key."""

    def __init__(self, job: Job, args: tuple, shards: list[Shard], shard_batches: int, slots: list[dict]):
        self.job, self.args, self.shards, self.sb, self.slots = job, args, shards, shard_batches, slots
        self.pending: deque[Shard] = deque(shards)
        self.results: dict[int, np.ndarray] = {}
        self.total = sum(sh.size for sh in shards)
        self.replaced = self.resubmitted = 0
        self.pids: set = set()
        self.facts: dict[str, Any] = {}
        self.error: str | None = None

    def retry(self, shard: Shard, e: BaseException, retries: int) -> bool:
        """Queue ``shard`` again after a fault; False once the job has had too many."""
        self.resubmitted += 1
        if self.resubmitted > retries * max(1, len(self.shards)):
            return False
        log.warning("ray: shard %d failed (%s); running it again", shard.key, _cause(e))
        self.pending.appendleft(shard)
        return True

    def done(self, key: int, kp: np.ndarray, facts: dict, shard: Shard) -> bool:
        if key in self.results or key != shard.key:
            return False  # a shard that came back twice counts once
        self.results[key] = kp
        self.pids.add((facts["host"], facts["pid"]))
        merged = {k: bool(self.facts.get(k)) or bool(facts.get(k)) for k in ("flip_merged", "async")}
        self.facts = {**(self.facts or facts), **merged}
        return True

    def gather(self, actors: int, address: str, shipped: bool, threads: int) -> tuple[np.ndarray, dict[str, Any]]:
        job = self.job
        if self.error:
            return None, {"mode": "ray", "error": self.error}
        out = np.zeros((job.num_samples, job.spec.num_keypoints, 3), dtype=np.float32)
        seen = np.zeros(job.num_samples, dtype=np.int64)
        for shard in self.shards:
            if shard.key not in self.results:
                raise EdgeposeError(f"ray: shard {shard.key} of {job.label or 'the job'} never came back")
            idx = np.concatenate([it.indices for it in shard.items])
            out[idx] = self.results[shard.key]
            np.add.at(seen, idx, 1)
        if not np.all(seen == 1):
            raise EdgeposeError(f"ray: {int(np.sum(seen != 1))} samples did not come back exactly once")
        f = self.facts
        return out, {"mode": "ray", "address": address, "actors": actors, "threads_per_actor": threads,
                     "worker_processes": len(self.pids), "hosts": sorted({h for h, _ in self.pids}),
                     "shards": len(self.shards), "batches_per_shard": self.sb,
                     "shards_resubmitted": self.resubmitted, "actors_replaced": self.replaced,
                     "ship_crops": shipped, "worker_pipeline": {k: f.get(k) for k in ("flip_merged", "async")},
                     "runtime": {**f.get("runtime", {}), "path": job.model.get("path")}}  # fmt: skip


class _Shipper:
    """``ship_crops``: the driver crops each shard (two threads, a few shards ahead) and puts the uint8 crops in
    the object store once for all jobs (their plans are the same), dropping them when every job has run it."""

    def __init__(self, ray, jobs: int):
        self.ray, self.jobs = ray, jobs
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="edgepose-ship")
        self.making: dict[tuple, Future] = {}
        self.refs: dict[tuple, list] = {}  # key -> [object ref, jobs still to run the shard]

    @staticmethod
    def _key(r: _JobRun, shard: Shard) -> tuple:
        return (r.job.spec.name, r.job.batch_size, r.sb, shard.key)

    def _make(self, r: _JobRun, shard: Shard) -> None:
        k = self._key(r, shard)
        if k not in self.refs and k not in self.making:
            pipe = TopDownPipeline(r.job.spec)
            self.making[k] = self.pool.submit(lambda: [np.ascontiguousarray(crops_of(pipe, it)) for it in shard.items])

    def ahead(self, r: _JobRun, count: int) -> None:
        for shard in list(r.pending)[:count]:
            self._make(r, shard)

    def ref(self, r: _JobRun, shard: Shard):
        k = self._key(r, shard)
        if k not in self.refs:
            self._make(r, shard)
            self.refs[k] = [self.ray.put(self.making.pop(k).result()), self.jobs]
        return self.refs[k][0]

    def release(self, r: _JobRun, shard: Shard) -> None:
        k = self._key(r, shard)
        if k in self.refs:
            self.refs[k][1] -= 1
            if self.refs[k][1] <= 0:
                del self.refs[k]

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
