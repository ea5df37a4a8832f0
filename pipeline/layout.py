"""The competition folder: label files, submission template and video lookup.

Accepts every release's names without edits (phase-1 `train_label.txt`, Kaggle's
`trainset_label.txt`, later `testset/` folders) and refuses label rows that try to
point outside the root (`../x.mp4`, absolute paths, sub-folders).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

LABEL_FILES = {
    "train": ("train_label.txt", "trainset_label.txt", "train_label.csv", "trainset_label.csv"),
    "val": ("val_label.txt", "valset_label.txt", "val_label.csv", "valset_label.csv"),
}
TEMPLATE_FILES = (
    "prediction.txt.csv",
    "prediction.csv",
    "prediction_test.csv",
    "prediction_test.txt.csv",
    "sample_submission.csv",
)
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
PREFERRED_DIRS = {"train": ("trainset",), "val": ("valset",), "test": ("testset", "valset")}


@dataclass(frozen=True)
class DataConfig:
    """`data:` section of params.yaml."""

    root: str = "data/sample"
    template: str | None = None  # file name inside root; None = first of TEMPLATE_FILES found


@dataclass
class Layout:
    root: Path
    train_labels: Path | None
    val_labels: Path | None
    template: Path | None
    videos: dict[str, list[Path]] = field(default_factory=dict)  # file name -> every copy found

    def resolve(self, name: str, subset: str = "test") -> Path | None:
        """Path of video `name`, preferring the folder that matches `subset`."""
        copies = self.videos.get(name, [])
        for folder in PREFERRED_DIRS.get(subset, ()):
            for path in copies:
                if path.parent.name == folder:
                    return path
        return copies[0] if copies else None


class LayoutError(ValueError):
    """The data folder does not match the competition layout; the message says how."""


def check_video_name(name: object, where: str) -> str:
    """A label or template entry must be a bare file name: no folders, no '..', no absolute path."""
    if not isinstance(name, str) or not name.strip():
        raise LayoutError(f"{where}: empty or non-text video name {name!r}")
    name = name.strip()
    bad = (
        "/" in name
        or "\\" in name
        or "\x00" in name
        or name in (".", "..")
        or os.path.isabs(name)
        or Path(name).name != name
    )
    if bad:
        raise LayoutError(
            f"{where}: video name {name!r} is not a plain file name; "
            "label and template rows must name files inside the data folder"
        )
    return name


def discover(root: str | os.PathLike, template: str | None = None) -> Layout:
    """Find label files, template and every video under `root` (any depth)."""
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(f"data.root does not exist or is not a folder: {root.resolve()}")
    train = _first_existing(root, LABEL_FILES["train"])
    val = _first_existing(root, LABEL_FILES["val"])
    if template is not None:
        tpl = root / check_video_name(template, "data.template")
        if not tpl.is_file():
            raise LayoutError(f"data.template {template!r} not found in {root}")
    else:
        tpl = _first_existing(root, TEMPLATE_FILES)
    videos: dict[str, list[Path]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fname in sorted(filenames):
            if fname.lower().endswith(VIDEO_SUFFIXES):
                videos.setdefault(fname, []).append(Path(dirpath) / fname)
    return Layout(root=root, train_labels=train, val_labels=val, template=tpl, videos=videos)


def _first_existing(root: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        if (root / name).is_file():
            return root / name
    return None


def read_labels(path: str | os.PathLike) -> pd.DataFrame:
    """`video_name,target` CSV -> DataFrame; checks names, targets in {0, 1}, duplicates."""
    path = Path(path)
    frame = pd.read_csv(path, dtype={"video_name": str})
    frame.columns = [str(c).strip() for c in frame.columns]
    if "video_name" not in frame.columns or "target" not in frame.columns:
        raise LayoutError(f"{path.name}: expected header 'video_name,target', got {list(frame.columns)}")
    for i, name in enumerate(frame["video_name"]):
        frame.at[i, "video_name"] = check_video_name(name, f"{path.name} row {i + 2}")
    targets = pd.to_numeric(frame["target"], errors="coerce")
    bad = frame.index[~targets.isin([0, 1])]
    if len(bad):
        i = bad[0]
        raise LayoutError(f"{path.name} row {i + 2}: target must be 0 or 1, got {frame.at[i, 'target']!r}")
    dup = frame["video_name"][frame["video_name"].duplicated()]
    if len(dup):
        raise LayoutError(f"{path.name}: video listed twice: {dup.iloc[0]}")
    return pd.DataFrame({"video_name": frame["video_name"], "target": targets.astype(int)})


def read_template(path: str | os.PathLike) -> pd.DataFrame:
    """The submission template as written (header and row order kept); names checked."""
    path = Path(path)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if frame.shape[1] < 2:
        raise LayoutError(f"{path.name}: expected two columns (video name, score), got {list(frame.columns)}")
    name_col = frame.columns[0]
    for i, name in enumerate(frame[name_col]):
        frame.iat[i, 0] = check_video_name(name, f"{path.name} row {i + 2}")
    dup = frame[name_col][frame[name_col].duplicated()]
    if len(dup):
        raise LayoutError(f"{path.name}: video listed twice: {dup.iloc[0]}")
    return frame


MANIFEST_COLUMNS = ["video_name", "subset", "target", "in_template", "path"]


def build_manifest(layout: Layout) -> pd.DataFrame:
    """One row per video the pipeline touches.

    subset: 'train' (train labels), 'val' (val labels: a local hold-out) or 'test'
    (template rows without a label). in_template marks rows the submission must score.
    path is relative to the root. A listed video with no file fails with its name.
    """
    if layout.train_labels is None:
        raise LayoutError(
            f"no train label file in {layout.root}; expected one of {LABEL_FILES['train']}"
        )
    rows: dict[str, dict] = {}
    for subset, label_path in (("train", layout.train_labels), ("val", layout.val_labels)):
        if label_path is None:
            continue
        for name, target in read_labels(label_path).itertuples(index=False):
            if name in rows:
                raise LayoutError(f"{name} is listed in both train and val labels")
            rows[name] = {"video_name": name, "subset": subset, "target": float(target), "in_template": False}
    if layout.template is not None:
        tpl = read_template(layout.template)
        for name in tpl.iloc[:, 0]:
            row = rows.setdefault(
                name, {"video_name": name, "subset": "test", "target": float("nan"), "in_template": False}
            )
            row["in_template"] = True
    missing = []
    for row in rows.values():
        path = layout.resolve(row["video_name"], row["subset"])
        if path is None:
            missing.append(row["video_name"])
        else:
            row["path"] = path.relative_to(layout.root).as_posix()
    if missing:
        shown = ", ".join(missing[:10]) + (f" (+{len(missing) - 10} more)" if len(missing) > 10 else "")
        raise LayoutError(
            f"{len(missing)} listed video(s) not found under {layout.root}: {shown}"
        )
    return pd.DataFrame(list(rows.values()), columns=MANIFEST_COLUMNS)
