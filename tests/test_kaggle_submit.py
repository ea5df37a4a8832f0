"""Submit / status through the REAL kaggle client against a fake Kaggle server on loopback."""
from __future__ import annotations

import secrets as pysecrets
import time
from pathlib import Path

import pandas as pd
import pytest

from pipeline.submission import ledger
from pipeline.submission.cli import build_message, main
try:
    from tests.fake_kaggle import FakeKaggle
except ImportError:  # run as `pytest` without the project root on sys.path
    from fake_kaggle import FakeKaggle

PARAMS = """\
write:
  filename: submission.csv
  precision: 6
kaggle:
  competition: fake-ffdv
  ledger: submissions/ledger.csv
  max_attempts: 3
  backoff_s: 0.01
  max_backoff_s: 0.05
  deadline_s: 30
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder with params, template and a valid submission; credentials in env."""
    home = tmp_path / "home"
    (home / ".kaggle").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(home / ".kaggle"))
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "TEST")
    monkeypatch.delenv("KAGGLE_API_TOKEN", raising=False)
    monkeypatch.setenv("KAGGLE_USERNAME", "tester")
    monkeypatch.setenv("KAGGLE_KEY", "k" + pysecrets.token_hex(16))
    root = tmp_path / "proj"
    (root / "data").mkdir(parents=True)
    (root / "submissions").mkdir()
    (root / "params.yaml").write_text(PARAMS)
    (root / "data" / "template.csv").write_text("video_name,y_pred\na.mp4,0\nb.mp4,0\nc.mp4,0\n")
    (root / "submissions" / "submission.csv").write_text("video_name,y_pred\na.mp4,0.100000\nb.mp4,0.900000\nc.mp4,0.500000\n")
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, project: Path):
    import os

    server = FakeKaggle(username="tester", key=os.environ["KAGGLE_KEY"]).start()
    yield server
    server.stop()


def _ledger(root: Path) -> pd.DataFrame:
    return ledger.read_ledger(root / "submissions" / "ledger.csv")


def _assert_no_secret(capfd: pytest.CaptureFixture, root: Path) -> None:
    import os

    out, err = capfd.readouterr()
    hidden = [v for v in (os.environ.get("KAGGLE_KEY"), os.environ.get("KAGGLE_API_TOKEN")) if v]
    ledger_text = (root / "submissions" / "ledger.csv").read_text() if (root / "submissions" / "ledger.csv").exists() else ""
    for secret in hidden:
        assert secret not in out and secret not in err and secret not in ledger_text


def test_submit_success_then_status_pulls_score(fake: FakeKaggle, project: Path, capfd) -> None:
    (project / "dvc.lock").write_text("schema: '2.0'\n")
    (project / "metrics").mkdir()
    (project / "metrics" / "cv.json").write_text('{"roc_auc": 0.91234}')
    assert main(["submit"]) == 0
    assert fake.count("StartSubmissionUpload") == 1 and fake.count("CreateSubmission") == 1
    sent = (project / "submissions" / "submission.csv").read_bytes()
    assert list(fake.uploads.values()) == [sent]
    desc = fake.submissions[0]["description"]
    assert "oof_auc 0.9123" in desc and "dvc.lock " in desc and desc.startswith("git ")
    rows = _ledger(project)
    assert len(rows) == 1
    row = rows.iloc[0]
    assert row["outcome"] == "submitted" and row["ref"] == "1001" and row["message"] == desc
    assert len(row["file_hash"]) == 32 and row["time_utc"].endswith("Z") and row["error"] == ""
    assert main(["status"]) == 0
    row = _ledger(project).iloc[0]
    assert row["public_score"] == "0.1001" and row["kaggle_status"] == "COMPLETE"
    _assert_no_secret(capfd, project)


def test_token_auth_via_env(fake: FakeKaggle, project: Path, monkeypatch, capfd) -> None:
    token = "tok" + pysecrets.token_hex(16)
    monkeypatch.delenv("KAGGLE_KEY")
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.setenv("KAGGLE_API_TOKEN", token)
    fake.token, fake.key = token, ""
    assert main(["submit", "--message", "token run"]) == 0
    assert fake.count("IntrospectToken") >= 1
    assert any(c.auth == f"Bearer {token}" for c in fake.calls if c.path.endswith("CreateSubmission"))
    assert _ledger(project).iloc[0]["message"] == "token run"
    _assert_no_secret(capfd, project)


def test_401_is_rejected_without_retry(fake: FakeKaggle, project: Path, capfd) -> None:
    fake.key = "another-key"  # server expects other credentials
    assert main(["submit"]) == 1
    assert fake.count("StartSubmissionUpload") == 1  # a definite rejection is never retried
    row = _ledger(project).iloc[0]
    assert row["outcome"] == "rejected" and "HTTP 401" in row["error"] and "credentials" in row["error"]
    out, err = capfd.readouterr()
    assert "HTTP 401" in err
    import os

    assert os.environ["KAGGLE_KEY"] not in out + err + (project / "submissions" / "ledger.csv").read_text()


def test_429_then_success(fake: FakeKaggle, project: Path, capfd) -> None:
    fake.fail("StartSubmissionUpload", 429, headers={"Retry-After": "30"})
    start = time.monotonic()
    assert main(["submit"]) == 0
    assert time.monotonic() - start < 10  # Retry-After capped by max_backoff_s
    assert fake.count("StartSubmissionUpload") == 2 and fake.count("CreateSubmission") == 1
    assert _ledger(project).iloc[0]["outcome"] == "submitted"
    assert "HTTP 429" in capfd.readouterr().err


def test_5xx_exhausts_bounded_retries(fake: FakeKaggle, project: Path, capfd) -> None:
    fake.fail("CreateSubmission", 503, times=10)
    assert main(["submit"]) == 1
    assert fake.count("CreateSubmission") == 3  # kaggle.max_attempts
    row = _ledger(project).iloc[0]
    assert row["outcome"] == "failed" and "HTTP 503" in row["error"] and "after 3 attempt(s)" in row["error"]
    _assert_no_secret(capfd, project)


def test_other_4xx_not_retried(fake: FakeKaggle, project: Path) -> None:
    fake.fail("StartSubmissionUpload", 404, message="competition not found")
    assert main(["submit"]) == 1
    assert fake.count("StartSubmissionUpload") == 1
    row = _ledger(project).iloc[0]
    assert row["outcome"] == "rejected" and "HTTP 404" in row["error"] and "competition not found" in row["error"]


def test_connection_refused(project: Path, capfd) -> None:
    assert main(["submit"]) == 1  # no server listening on the TEST port
    row = _ledger(project).iloc[0]
    assert row["outcome"] == "failed" and "connection refused" in row["error"]
    assert "localhost:7777" in row["error"] and "after 3 attempt(s)" in row["error"]
    _assert_no_secret(capfd, project)


def test_dry_run_sends_and_records_nothing(fake: FakeKaggle, project: Path, capfd) -> None:
    assert main(["submit", "--dry-run", "-m", "try"]) == 0
    assert fake.calls == []
    assert not (project / "submissions" / "ledger.csv").exists()
    out, _ = capfd.readouterr()
    assert "dry run" in out and "fake-ffdv" in out and "'try'" in out


def test_invalid_file_is_not_sent(fake: FakeKaggle, project: Path, capfd) -> None:
    bad = project / "bad.csv"
    bad.write_text("video_name,y_pred\na.mp4,1.5\nb.mp4,0.2\n")
    assert main(["submit", str(bad)]) == 1
    assert fake.calls == [] and not (project / "submissions" / "ledger.csv").exists()
    out, _ = capfd.readouterr()
    assert "out_of_range" in out and "'c.mp4'" in out


def test_missing_credentials(project: Path, monkeypatch, capfd) -> None:
    monkeypatch.delenv("KAGGLE_KEY")
    monkeypatch.delenv("KAGGLE_USERNAME")
    assert main(["submit"]) == 2
    assert "no usable Kaggle credentials" in capfd.readouterr().err
    assert not (project / "submissions" / "ledger.csv").exists()


def test_message_without_git(project: Path) -> None:
    assert build_message(project) == "git nogit | dvc.lock none | oof_auc n/a"
