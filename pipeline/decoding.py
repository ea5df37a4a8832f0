"""The decode stage: every manifest video -> one cached `data/decoded/<key>.npz` entry.

`key` = blake2b of the file's bytes + hash of the decode settings that shape the output, so
adding videos decodes only the new ones, a killed run resumes where it stopped, and renaming
or moving a file costs nothing. Workers write their own entries atomically; the manifest is
written last, and entries no manifest row refers to are deleted so the DVC output stays
consistent. Also holds the small process-pool helper the extract stage reuses.
"""
from __future__ import annotations

import functools
import hashlib
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, TypeVar

import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline.atomic import atomic_path, file_digest, params_digest, write_bytes, write_csv
from pipeline.config import section
from pipeline.layout import TEMPLATE_FILES, DataConfig, LayoutError, build_manifest, discover
from pipeline.video import DecodeConfig, DecodedVideo, decode_video

DECODED_DIR = Path("data/decoded")
MANIFEST = Path("data/manifest.csv")
TEMPLATE_COPY = Path("data/template.csv")
DECODE_COLUMNS = ["key", "n_frames", "has_audio", "duration", "decode_status", "reason"]

# Imported once by the fork server that starts pool workers (both stages share one server per
# process, and it keeps the first preload list, so it names everything either stage needs).
POOL_PRELOAD = ("pipeline.decoding", "pipeline.extraction")

J = TypeVar("J")
R = TypeVar("R")


# --------------------------------------------------------------------------- process pool
def worker_count(workers: int) -> int:
    """`workers` if positive, else the CPU cores this process may use."""
    if workers and int(workers) > 0:
        return int(workers)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def parallel_map(
    fn: Callable[[J], R],
    jobs: Iterable[J],
    workers: int,
    desc: str,
    on_crash: Callable[[J, BaseException], R],
    initializer: Callable[..., Any] | None = None,
    initargs: tuple = (),
    preload: tuple[str, ...] = POOL_PRELOAD,
) -> Iterator[tuple[J, R]]:
    """Yield (job, fn(job)) as jobs finish, with a tqdm bar; one worker runs in this process.

    Workers come from a fork server, not a plain fork of this process: OpenCV's and FFmpeg's
    thread pools are not fork-safe (a forked child can hang forever on a lock inherited mid-use),
    and `preload` modules are imported once in the server, so workers start warm.

    A worker that dies (e.g. a native crash on hostile media) breaks the pool; the jobs that
    were in flight are then retried one per fresh process, and a job that kills its process
    again gets `on_crash(job, error)` instead of a result, so no row is ever lost.
    """
    jobs = list(jobs)
    bar = tqdm(total=len(jobs), desc=desc, unit="video", dynamic_ncols=True)
    try:
        if workers <= 1 or len(jobs) <= 1:
            if initializer is not None:
                initializer(*initargs)
            for job in jobs:
                yield job, fn(job)
                bar.update(1)
            return
        crashed: list[J] = []
        context = _pool_context(preload)
        with ProcessPoolExecutor(workers, context, initializer=initializer, initargs=initargs) as pool:
            futures = {pool.submit(fn, job): job for job in jobs}
            for future in as_completed(futures):
                job = futures[future]
                try:
                    result = future.result()
                except BrokenProcessPool:
                    crashed.append(job)
                    continue
                yield job, result
                bar.update(1)
        for job in crashed:
            with ProcessPoolExecutor(1, context, initializer=initializer, initargs=initargs) as pool:
                try:
                    result = pool.submit(fn, job).result()
                except BrokenProcessPool as exc:
                    result = on_crash(job, exc)
            yield job, result
            bar.update(1)
    finally:
        bar.close()


def _pool_context(preload: tuple[str, ...]) -> multiprocessing.context.BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(list(preload))
        return context
    return multiprocessing.get_context("spawn")  # Windows


def prune_entries(folder: Path, keep: set[str], suffix: str = ".npz") -> int:
    """Delete `<key><suffix>` files whose key is not in `keep`, and temp files of killed runs."""
    removed = 0
    if not folder.is_dir():
        return 0
    for path in folder.iterdir():
        if not path.is_file():
            continue
        stale_tmp = path.name.startswith(".")  # atomic_path temp files: ".<name>.<random><suffix>"
        stale = path.name.endswith(suffix) and path.name[: -len(suffix)] not in keep
        if stale_tmp or stale:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


# --------------------------------------------------------------------------- cache entries
@functools.lru_cache(maxsize=16)
def code_digest(*paths: str | os.PathLike) -> str:
    """Hash of source files (a folder = its .py files): a code change invalidates cache entries.

    DVC reruns a stage when its code changes, but the per-video entries persist between runs;
    without this, a rerun after a bug fix would silently reuse entries made by the old code.
    """
    h = hashlib.blake2b(digest_size=6)
    for path in paths:
        path = Path(path)
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            h.update(file.name.encode())
            h.update(file.read_bytes())
    return h.hexdigest()


DECODE_CODE = (Path(__file__).with_name("video.py"), Path(__file__).with_name("audio.py"))


def decode_key(digest: str, cfg: DecodeConfig) -> str:
    """Cache key of one video: content digest + output-shaping decode settings + decoder code."""
    return f"{digest}-{params_digest(cfg.output_params())}{code_digest(*DECODE_CODE)}"


def save_decoded(path: Path, decoded: DecodedVideo) -> None:
    """One entry, atomically (frames, times, audio, duration + status fields)."""
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(
            tmp,
            frames=decoded.frames,
            times=decoded.times.astype(np.float32),
            audio=decoded.audio.astype(np.float32),
            duration=np.float64(decoded.duration),
            status=np.array(decoded.status),
            reason=np.array(decoded.reason),
            has_audio=np.bool_(decoded.has_audio),
            sample_rate=np.int64(decoded.sample_rate),
        )


def load_decoded(path: str | os.PathLike) -> DecodedVideo:
    """Read an entry written by `save_decoded`."""
    with np.load(path, allow_pickle=False) as data:
        return DecodedVideo(
            frames=data["frames"],
            times=data["times"],
            audio=data["audio"],
            duration=float(data["duration"]),
            status=str(data["status"]),
            reason=str(data["reason"]),
            has_audio=bool(data["has_audio"]),
            sample_rate=int(data["sample_rate"]),
        )


def _entry_row(key: str, decoded: DecodedVideo, computed: bool) -> dict[str, Any]:
    return {
        "key": key,
        "n_frames": decoded.n_frames,
        "has_audio": decoded.has_audio,
        "duration": round(float(decoded.duration), 4),
        "decode_status": decoded.status,
        "reason": decoded.reason,
        "computed": computed,
    }


def decode_entry(job: tuple[str, str], cfg: DecodeConfig, out_dir: str) -> dict[str, Any]:
    """Worker: decode one video into its cache entry unless it is already there."""
    name, path = job
    folder = Path(out_dir)
    try:
        digest = file_digest(path)
    except OSError as exc:  # unreadable file: keep the row, with an empty entry
        digest = "unreadable" + hashlib.blake2b(name.encode(), digest_size=8).hexdigest()
        decoded = _empty(cfg, "error", f"cannot read file ({exc.strerror or exc})")
        key = decode_key(digest, cfg)
        save_decoded(folder / f"{key}.npz", decoded)
        return _entry_row(key, decoded, True)
    key = decode_key(digest, cfg)
    entry = folder / f"{key}.npz"
    if entry.is_file():
        try:
            return _entry_row(key, load_decoded(entry), False)
        except (OSError, ValueError, KeyError):
            pass  # damaged entry: decode again
    decoded = decode_video(path, cfg, seed_key=digest)
    save_decoded(entry, decoded)
    return _entry_row(key, decoded, True)


def _empty(cfg: DecodeConfig, status: str, reason: str) -> DecodedVideo:
    return DecodedVideo(
        frames=np.zeros((0, 0, 0, 3), np.uint8),
        times=np.zeros(0, np.float32),
        audio=np.zeros(0, np.float32),
        duration=0.0,
        status=status,
        reason=reason,
        has_audio=False,
        sample_rate=int(cfg.sample_rate),
    )


# --------------------------------------------------------------------------- the stage
def format_counts(counts: Mapping[str, int]) -> str:
    """`{"ok": 58, "short": 2}` -> "ok 58, short 2" for the stages' one-line summaries."""
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


@dataclass
class DecodeSummary:
    videos: int
    computed: int
    cached: int
    statuses: dict[str, int]
    without_audio: int
    pruned: int

    def line(self) -> str:
        return (
            f"decode: {self.videos} videos ({self.computed} decoded, {self.cached} cached); "
            f"status: {format_counts(self.statuses)}; {self.without_audio} without audio; {self.pruned} stale entries removed "
            f"-> {MANIFEST}"
        )


def run_decode(
    params: Mapping[str, Any],
    decoded_dir: Path = DECODED_DIR,
    manifest_path: Path = MANIFEST,
    template_copy: Path = TEMPLATE_COPY,
) -> DecodeSummary:
    """Decode every manifest video (in parallel, incrementally); write manifest + template copy."""
    data_cfg = section(params, "data", DataConfig)
    cfg = section(params, "decode", DecodeConfig)
    layout = discover(data_cfg.root, data_cfg.template)
    if layout.template is None:
        raise LayoutError(
            f"no submission template in {layout.root}; expected one of {TEMPLATE_FILES} "
            "or set data.template to its file name"
        )
    manifest = build_manifest(layout)
    workers = min(worker_count(cfg.workers), max(1, len(manifest)))
    cores = worker_count(0)
    run_cfg = replace(cfg, threads=cfg.threads or max(1, cores // workers))
    decoded_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(row.video_name, str(layout.root / row.path)) for row in manifest.itertuples(index=False)]
    work = functools.partial(decode_entry, cfg=run_cfg, out_dir=str(decoded_dir))
    crash = functools.partial(_crash_row, cfg=run_cfg, out_dir=str(decoded_dir))
    rows: dict[str, dict[str, Any]] = {}
    for (name, _), row in parallel_map(work, jobs, workers, "decode", crash):
        rows[name] = row
    extra = pd.DataFrame([rows[name] for name in manifest["video_name"]])
    computed = int(extra.pop("computed").sum())
    manifest = pd.concat([manifest.reset_index(drop=True), extra[DECODE_COLUMNS]], axis=1)
    write_csv(manifest_path, manifest)
    write_bytes(template_copy, layout.template.read_bytes())
    pruned = prune_entries(decoded_dir, set(manifest["key"]))
    return DecodeSummary(
        videos=len(manifest),
        computed=computed,
        cached=len(manifest) - computed,
        statuses=manifest["decode_status"].value_counts().to_dict(),
        without_audio=int((~manifest["has_audio"].astype(bool)).sum()),
        pruned=pruned,
    )


def _crash_row(job: tuple[str, str], exc: BaseException, cfg: DecodeConfig, out_dir: str) -> dict[str, Any]:
    """Entry for a video whose decoding killed the worker process twice."""
    name, path = job
    try:
        digest = file_digest(path)
    except OSError:
        digest = "unreadable" + hashlib.blake2b(name.encode(), digest_size=8).hexdigest()
    key = decode_key(digest, cfg)
    decoded = _empty(cfg, "error", f"decoder crashed on this file ({type(exc).__name__})")
    save_decoded(Path(out_dir) / f"{key}.npz", decoded)
    return _entry_row(key, decoded, True)
