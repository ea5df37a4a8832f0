"""Run one DVC stage's entry module as its own process, as `dvc repro` does."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_stage(
    cwd: Path, stage: str, *launcher: str, extra_env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """`python -m stages.<stage>` (or `<launcher...> -m stages.<stage>`, e.g. torchrun) in `cwd`,
    with this checkout importable; output captured, return code left to the caller."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), **(extra_env or {})}
    cmd = [*(launcher or (sys.executable,)), "-m", f"stages.{stage}"]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
