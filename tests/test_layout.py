"""The competition folder contract: label-file name variants, template lookup, path tricks."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipeline.layout import LayoutError, build_manifest, discover, read_labels, read_template


def _touch_video(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00" * 16)


def _make_root(tmp_path: Path, train_name: str = "train_label.txt", val_name: str | None = "val_label.txt",
               test_dir: str = "valset", template: str = "prediction.txt.csv") -> Path:
    root = tmp_path / "root"
    for name in ("a.mp4", "b.mp4"):
        _touch_video(root / "trainset" / name)
    for name in ("c.mp4", "d.mp4"):
        _touch_video(root / test_dir / name)
    (root / train_name).write_text("video_name,target\na.mp4,0\nb.mp4,1\n")
    if val_name:
        (root / val_name).write_text("video_name,target\nc.mp4,1\nd.mp4,0\n")
    (root / template).write_text("video_name,y_pred\nd.mp4,0\nc.mp4,0\n")
    return root


@pytest.mark.parametrize(
    "train_name,val_name,test_dir",
    [
        ("train_label.txt", "val_label.txt", "valset"),  # phase-1 sample
        ("trainset_label.txt", "valset_label.txt", "valset"),  # Kaggle multi-ffdv release
        ("trainset_label.txt", None, "testset"),  # later phase: unlabelled test folder
    ],
)
def test_release_variants_are_found_without_edits(tmp_path, train_name, val_name, test_dir):
    root = _make_root(tmp_path, train_name, val_name, test_dir)
    layout = discover(root)
    manifest = build_manifest(layout)
    assert layout.train_labels.name == train_name
    assert set(manifest.video_name) == {"a.mp4", "b.mp4", "c.mp4", "d.mp4"}
    tpl_rows = manifest[manifest.in_template]
    assert set(tpl_rows.video_name) == {"c.mp4", "d.mp4"}
    expected_subset = "val" if val_name else "test"
    assert set(tpl_rows.subset) == {expected_subset}
    assert manifest.set_index("video_name").loc["c.mp4", "path"] == f"{test_dir}/c.mp4"
    train = manifest[manifest.subset == "train"].set_index("video_name")
    assert train.loc["b.mp4", "target"] == 1.0


def test_template_keeps_header_and_order(tmp_path):
    root = _make_root(tmp_path)
    tpl = read_template(root / "prediction.txt.csv")
    assert list(tpl.columns) == ["video_name", "y_pred"]
    assert list(tpl.video_name) == ["d.mp4", "c.mp4"]


def test_missing_template_video_fails_naming_it(tmp_path):
    root = _make_root(tmp_path)
    (root / "prediction.txt.csv").write_text("video_name,score\nc.mp4,0\nghost.mp4,0\n")
    with pytest.raises(LayoutError, match="ghost.mp4"):
        build_manifest(discover(root))


@pytest.mark.parametrize("bad", ["../etc/passwd", "/abs/x.mp4", "sub/x.mp4", "..", "a\\b.mp4", ""])
def test_path_tricks_in_label_files_are_refused(tmp_path, bad):
    path = tmp_path / "train_label.txt"
    pd.DataFrame({"video_name": [bad or " "], "target": [1]}).to_csv(path, index=False)
    with pytest.raises(LayoutError):
        read_labels(path)


def test_bad_targets_and_duplicates_are_refused(tmp_path):
    path = tmp_path / "train_label.txt"
    path.write_text("video_name,target\na.mp4,2\n")
    with pytest.raises(LayoutError, match="0 or 1"):
        read_labels(path)
    path.write_text("video_name,target\na.mp4,1\na.mp4,0\n")
    with pytest.raises(LayoutError, match="twice"):
        read_labels(path)


def test_missing_root_and_labels_give_clear_errors(tmp_path):
    with pytest.raises(LayoutError, match="does not exist"):
        discover(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LayoutError, match="no train label file"):
        build_manifest(discover(tmp_path / "empty"))
