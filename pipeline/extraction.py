"""The extract stage: decoded entries -> face crops + log-mels, packed in manifest order.

Each video's features are cached in `data/features/entries/<key>.npz`, `key` = decode key +
hash of the face/audio settings, K and the feature code, so changing only the audio settings
or adding videos recomputes only what changed. The entries are then packed into
`faces.npy` / `mels.npy` (row = manifest row; written through a memory map so the dataset
never has to fit in RAM), with `index.csv`, `report.csv` (one line per fallback) and a
picture of some crops for humans.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from pipeline.atomic import atomic_path, params_digest, write_csv
from pipeline.config import section, to_dict
from pipeline.decoding import (
    DECODED_DIR, MANIFEST, code_digest, format_counts, load_decoded, parallel_map, prune_entries, worker_count,
)
from pipeline.faces import Detector, FaceConfig, create_detector
from pipeline.features import FLOOR_DB, AudioConfig, Features, extract_features
from pipeline.video import DecodeConfig

FEATURES_DIR = Path("data/features")
PLOT = Path("plots/face_crops.png")
INDEX_COLUMNS = [
    "video_name", "subset", "target", "in_template", "row",
    "decode_status", "face_status", "faces_found", "audio_status", "reason",
]
REPORT_COLUMNS = ["video_name", "stage", "reason"]
FEATURE_CODE = (Path(__file__).with_name("features.py"), Path(__file__).with_name("faces"))

_detector: Detector | None = None  # one per worker process, built by _init_worker


def _init_worker(faces_cfg: FaceConfig) -> None:
    import cv2

    global _detector
    cv2.setNumThreads(1)  # parallelism comes from the worker processes
    _detector = create_detector(faces_cfg)


def entry_key(decode_key: str, faces_cfg: FaceConfig, audio_cfg: AudioConfig, frames: int) -> str:
    """Cache key of one video's features."""
    settings = {"faces": to_dict(faces_cfg), "audio": audio_cfg.output_params(), "frames": int(frames)}
    return f"{decode_key}-{params_digest(settings)}{code_digest(*FEATURE_CODE)}"


def save_features(path: Path, feats: Features) -> None:
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(
            tmp,
            faces=feats.faces,
            mel=feats.mel,
            face_status=np.array(feats.face_status),
            faces_found=np.int64(feats.faces_found),
            audio_status=np.array(feats.audio_status),
            face_reason=np.array(feats.face_reason),
            audio_reason=np.array(feats.audio_reason),
        )


def _meta(path: Path) -> dict[str, Any]:
    with np.load(path, allow_pickle=False) as data:
        return {
            "face_status": str(data["face_status"]),
            "faces_found": int(data["faces_found"]),
            "audio_status": str(data["audio_status"]),
            "face_reason": str(data["face_reason"]),
            "audio_reason": str(data["audio_reason"]),
        }


def extract_entry(
    job: tuple[str, str],
    faces_cfg: FaceConfig,
    audio_cfg: AudioConfig,
    frames: int,
    decoded_dir: str,
    entries_dir: str,
) -> dict[str, Any]:
    """Worker: features of one decoded video into its cache entry unless already there."""
    _, decode_key = job
    key = entry_key(decode_key, faces_cfg, audio_cfg, frames)
    entry = Path(entries_dir) / f"{key}.npz"
    if entry.is_file():
        try:
            return {"entry": key, "computed": False, **_meta(entry)}
        except (OSError, ValueError, KeyError):
            pass  # damaged entry: compute again
    source = Path(decoded_dir) / f"{decode_key}.npz"
    if not source.is_file():
        raise FileNotFoundError(f"{source} is missing although data/manifest.csv lists it; rerun `dvc repro decode`")
    if _detector is None:
        _init_worker(faces_cfg)
    feats = extract_features(load_decoded(source), _detector, faces_cfg, audio_cfg, frames)
    save_features(entry, feats)
    return {"entry": key, "computed": True, **_meta(entry)}


@dataclass
class ExtractSummary:
    videos: int
    computed: int
    face_statuses: dict[str, int]
    audio_statuses: dict[str, int]
    report_lines: int
    pruned: int
    out_dir: Path

    def line(self) -> str:
        return (
            f"extract: {self.videos} videos ({self.computed} computed, {self.videos - self.computed} cached); "
            f"faces: {format_counts(self.face_statuses)}; audio: {format_counts(self.audio_statuses)}; {self.report_lines} fallback lines in report.csv; "
            f"{self.pruned} stale entries removed -> {self.out_dir}"
        )


def run_extract(
    params: Mapping[str, Any],
    manifest_path: Path = MANIFEST,
    decoded_dir: Path = DECODED_DIR,
    out_dir: Path = FEATURES_DIR,
    plot_path: Path = PLOT,
) -> ExtractSummary:
    """Features for every manifest row (parallel, incremental), packed in manifest order."""
    decode_cfg = section(params, "decode", DecodeConfig)
    faces_cfg = section(params, "faces", FaceConfig)
    audio_cfg = section(params, "audio", AudioConfig)
    audio_cfg.check_decoded_length(decode_cfg.max_audio_seconds, decode_cfg.sample_rate)
    create_detector(faces_cfg)  # fail fast, in this process, on a missing model file
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{manifest_path} not found; run the decode stage first (`dvc repro decode`)")
    manifest = pd.read_csv(manifest_path, dtype={"video_name": str, "key": str, "reason": str}, keep_default_na=False,
                           na_values={"target": [""]})
    k = int(decode_cfg.frames)
    entries_dir = out_dir / "entries"
    entries_dir.mkdir(parents=True, exist_ok=True)
    workers = min(worker_count(decode_cfg.workers), max(1, len(manifest)))
    work = functools.partial(
        extract_entry, faces_cfg=faces_cfg, audio_cfg=audio_cfg, frames=k,
        decoded_dir=str(decoded_dir), entries_dir=str(entries_dir),
    )
    jobs = list(zip(manifest["video_name"], manifest["key"]))
    results: dict[str, dict[str, Any]] = {}
    crash = functools.partial(
        _crash_entry, faces_cfg=faces_cfg, audio_cfg=audio_cfg, frames=k, entries_dir=str(entries_dir)
    )
    for (name, _), result in parallel_map(
        work, jobs, workers, "extract", crash, initializer=_init_worker, initargs=(faces_cfg,)
    ):
        results[name] = result
    rows = [results[name] for name in manifest["video_name"]]
    _pack(entries_dir, [r["entry"] for r in rows], out_dir, k, faces_cfg, audio_cfg)
    index, report = _tables(manifest, rows)
    write_csv(out_dir / "index.csv", index)
    write_csv(out_dir / "report.csv", report)
    plot_face_crops(out_dir / "faces.npy", index, plot_path)
    pruned = prune_entries(entries_dir, {r["entry"] for r in rows})
    return ExtractSummary(
        videos=len(manifest),
        computed=sum(bool(r["computed"]) for r in rows),
        face_statuses=index["face_status"].value_counts().to_dict(),
        audio_statuses=index["audio_status"].value_counts().to_dict(),
        report_lines=len(report),
        pruned=pruned,
        out_dir=out_dir,
    )


def _crash_entry(
    job: tuple[str, str], exc: BaseException, faces_cfg: FaceConfig, audio_cfg: AudioConfig, frames: int, entries_dir: str
) -> dict[str, Any]:
    """Blank features for a video whose extraction killed the worker process twice."""
    size = int(faces_cfg.size)
    reason = f"feature extraction crashed ({type(exc).__name__}); blank features"
    feats = Features(
        faces=np.zeros((int(frames), size, size, 3), np.uint8),
        mel=np.full((int(audio_cfg.n_mels), int(audio_cfg.frames)), FLOOR_DB, np.float16),
        face_status="none",
        faces_found=0,
        audio_status="missing",
        reason=reason,
        face_reason=reason,
        audio_reason=reason,
    )
    key = entry_key(job[1], faces_cfg, audio_cfg, frames)
    save_features(Path(entries_dir) / f"{key}.npz", feats)
    return {"entry": key, "computed": True, **_meta(Path(entries_dir) / f"{key}.npz")}


def _pack(entries_dir: Path, keys: list[str], out_dir: Path, k: int, faces_cfg: FaceConfig, audio_cfg: AudioConfig) -> None:
    """Entries -> faces.npy / mels.npy through memory maps (rows in manifest order)."""
    n, s = len(keys), int(faces_cfg.size)
    faces_shape = (n, k, s, s, 3)
    mels_shape = (n, int(audio_cfg.n_mels), int(audio_cfg.frames))
    with atomic_path(out_dir / "faces.npy", suffix=".npy") as faces_tmp, atomic_path(
        out_dir / "mels.npy", suffix=".npy"
    ) as mels_tmp:
        if n == 0:
            np.save(faces_tmp, np.zeros(faces_shape, np.uint8))
            np.save(mels_tmp, np.zeros(mels_shape, np.float16))
            return
        faces = np.lib.format.open_memmap(faces_tmp, mode="w+", dtype=np.uint8, shape=faces_shape)
        mels = np.lib.format.open_memmap(mels_tmp, mode="w+", dtype=np.float16, shape=mels_shape)
        for row, key in enumerate(keys):
            with np.load(entries_dir / f"{key}.npz", allow_pickle=False) as data:
                faces[row] = data["faces"]
                mels[row] = data["mel"]
        faces.flush()
        mels.flush()
        del faces, mels


def _tables(manifest: pd.DataFrame, rows: list[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    index = pd.DataFrame(
        {
            "video_name": manifest["video_name"],
            "subset": manifest["subset"],
            "target": manifest["target"],
            "in_template": manifest["in_template"],
            "row": np.arange(len(manifest), dtype=np.int64),
            "decode_status": manifest["decode_status"],
            "face_status": [r["face_status"] for r in rows],
            "faces_found": [r["faces_found"] for r in rows],
            "audio_status": [r["audio_status"] for r in rows],
        }
    )
    reasons, report = [], []
    for (name, decode_status, decode_reason), r in zip(
        manifest[["video_name", "decode_status", "reason"]].itertuples(index=False), rows
    ):
        decode_reason = "" if pd.isna(decode_reason) else str(decode_reason)
        parts = [p for p in (decode_reason, r["face_reason"], r["audio_reason"]) if p]
        reasons.append("; ".join(dict.fromkeys(parts)))
        if decode_status != "ok":
            report.append((name, "decode", f"{decode_status}: {decode_reason}"))
        if r["face_status"] != "ok":
            report.append((name, "faces", f"{r['face_status']}: {r['face_reason']}"))
        if r["audio_status"] != "ok":
            report.append((name, "audio", f"{r['audio_status']}: {r['audio_reason']}"))
    index["reason"] = reasons
    return index[INDEX_COLUMNS], pd.DataFrame(report, columns=REPORT_COLUMNS)


def plot_face_crops(faces_path: Path, index: pd.DataFrame, dest: Path, per_class: int = 4, columns: int = 8) -> None:
    """A grid of crops, real rows above fake rows (unlabelled rows when nothing is labelled)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    faces = np.load(faces_path, mmap_mode="r")
    picks: list[tuple[str, int, str]] = []
    target = pd.to_numeric(index["target"], errors="coerce")
    for label, value in (("real", 0), ("fake", 1)):
        for row, name in index.loc[target == value, ["row", "video_name"]].head(per_class).itertuples(index=False):
            picks.append((label, int(row), name))
    if not picks:
        picks = [("unlabelled", int(r), n) for r, n in index[["row", "video_name"]].head(2 * per_class).itertuples(index=False)]
    cols = max(1, min(columns, faces.shape[1] if faces.ndim == 5 else 1))
    nrows = max(1, len(picks))
    fig, axes = plt.subplots(nrows, cols, figsize=(1.3 * cols + 1.2, 1.4 * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, (label, row, name) in enumerate(picks):
        for j in range(min(cols, faces.shape[1])):
            axes[i, j].imshow(faces[row, j])
        axes[i, 0].set_title(f"{label}: {name}", fontsize=7, loc="left")
    if not picks:
        axes[0, 0].text(0.5, 0.5, "no videos", ha="center", va="center")
    fig.suptitle("face crops (rows: videos, columns: frames)", fontsize=9)
    fig.tight_layout()
    with atomic_path(dest, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
