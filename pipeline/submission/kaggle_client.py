"""Talk to Kaggle through the official `kaggle` package (which uses `kagglesdk`).

Why a thin wrapper and not `kaggle competitions submit`: bounded retries with backoff on 429,
5xx and unreachable hosts (never after a definite 4xx), messages that say what went wrong,
credentials kept out of every printed line and of the ledger, and `KAGGLE_API_ENVIRONMENT`
honoured (the stock `KaggleApi` only knows PROD and LOCALHOST; tests use TEST =
http://localhost:7777 with a fake server).

Retry budget: `max_attempts` calls, sleeps of `backoff_s * 2**i` capped at `max_backoff_s`
(a 429's Retry-After is honoured up to the same cap), no new attempt after `deadline_s`.
Inside one attempt the kaggle client itself only retries the upload PUT on connection
errors (urllib3 Retry(total=10)), so the total stays bounded.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import requests

T = TypeVar("T")


@dataclass(frozen=True)
class KaggleConfig:
    """`kaggle:` section of params.yaml."""

    competition: str = "multi-ffdv"
    ledger: str = "submissions/ledger.csv"
    max_attempts: int = 4  # calls per operation, first one included
    backoff_s: float = 2.0  # first sleep; doubles per retry
    max_backoff_s: float = 60.0  # cap on one sleep (also on a 429's Retry-After)
    deadline_s: float = 600.0  # no new attempt after this many seconds


class KaggleCallError(RuntimeError):
    """A Kaggle call ended without success. `outcome` is `rejected` (definite 4xx, not
    retried), `failed` (transient errors until the budget ran out) or `auth` (no credentials)."""

    def __init__(self, outcome: str, message: str, status: int | None = None, attempts: int = 0):
        super().__init__(message)
        self.outcome = outcome
        self.status = status
        self.attempts = attempts


class _Transient(Exception):
    """An attempt failed in a way worth retrying."""

    def __init__(self, message: str, retry_after: float | None = None, status: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


def endpoint() -> str:
    """Base URL the kaggle client will call (depends on KAGGLE_API_ENVIRONMENT)."""
    from kagglesdk.kaggle_env import get_endpoint, get_env

    return get_endpoint(get_env())


def secrets() -> list[str]:
    """Every credential value visible to this process, for redaction (never printed)."""
    found = [os.environ.get("KAGGLE_KEY", ""), os.environ.get("KAGGLE_API_TOKEN", "")]
    token_env = os.environ.get("KAGGLE_API_TOKEN", "")
    candidates = [Path(token_env)] if token_env and len(token_env) < 4096 else []
    config_dir = os.environ.get("KAGGLE_CONFIG_DIR")
    homes = [Path(config_dir)] if config_dir else []
    homes += [Path.home() / ".kaggle", Path.home() / ".config" / "kaggle"]
    for home in homes:
        candidates += [home / "access_token", home / "access_token.txt", home / "kaggle.json"]
    for path in candidates:
        with contextlib.suppress(OSError, ValueError):
            if path.is_file():
                text = path.read_text(encoding="utf-8").strip()
                if path.name == "kaggle.json":
                    found.append(str(json.loads(text).get("key", "")))
                else:
                    found.append(text)
    return sorted({s for s in found if len(s) >= 4}, key=len, reverse=True)


def redact(text: str, hidden: list[str] | None = None) -> str:
    """`text` with every credential value replaced by ***."""
    for secret in secrets() if hidden is None else hidden:
        text = text.replace(secret, "***")
    return text


def connect() -> Any:
    """An authenticated `KaggleApi` whose client honours KAGGLE_API_ENVIRONMENT.

    Credentials: ~/.kaggle/kaggle.json, KAGGLE_USERNAME + KAGGLE_KEY, or KAGGLE_API_TOKEN
    (resolved by the kaggle package itself). Raises KaggleCallError('auth') when none work.
    """
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        # the package's __init__ tries to authenticate at import time; keep its noise quiet
        from kaggle.api.kaggle_api_extended import KaggleApi
        from kagglesdk import KaggleClient
        from kagglesdk.kaggle_env import get_env

    class ProjectKaggleApi(KaggleApi):
        def build_kaggle_client(self) -> KaggleClient:  # type: ignore[override]
            return KaggleClient(
                env=get_env(),
                verbose=False,
                username=self.config_values.get(self.CONFIG_NAME_USER),
                password=self.config_values.get(self.CONFIG_NAME_KEY),
                api_token=self.config_values.get(self.CONFIG_NAME_TOKEN),
                response_processor=self.get_response_processor(),
            )

    api = ProjectKaggleApi()
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            api.authenticate()
    except SystemExit:
        raise KaggleCallError(
            "auth",
            "no usable Kaggle credentials: put kaggle.json in ~/.kaggle (or KAGGLE_CONFIG_DIR), "
            "or set KAGGLE_USERNAME and KAGGLE_KEY, or KAGGLE_API_TOKEN",
        ) from None
    except requests.RequestException as exc:
        raise KaggleCallError("failed", redact(f"cannot check the Kaggle token at {endpoint()}: {_describe(exc)}")) from None
    return api


def call_with_retry(
    fn: Callable[[], T],
    cfg: KaggleConfig,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> tuple[T, int]:
    """Run `fn` (one Kaggle operation) within the retry budget; returns (result, attempts).

    Output the kaggle package prints during a call is captured and re-emitted redacted.
    """
    hidden = secrets()
    start = time.monotonic()
    last: _Transient | None = None
    attempts = 0
    for attempt in range(max(1, cfg.max_attempts)):
        if attempt and time.monotonic() - start > cfg.deadline_s:
            break
        attempts = attempt + 1
        sink = io.StringIO()
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                return _classify(fn), attempts
        except _Transient as exc:
            last = exc
        finally:
            for line in sink.getvalue().splitlines():
                if line.strip():
                    log(redact(f"kaggle: {line}", hidden))
        if attempts >= cfg.max_attempts:
            break
        delay = min(cfg.backoff_s * 2**attempt, cfg.max_backoff_s)
        if last.retry_after is not None:
            delay = min(max(delay, last.retry_after), cfg.max_backoff_s)
        log(redact(f"{what}: {last} (attempt {attempts}/{cfg.max_attempts}); retrying in {delay:.1f}s", hidden))
        sleep(delay)
    assert last is not None
    raise KaggleCallError(
        "failed", redact(f"{what} failed after {attempts} attempt(s): {last}", hidden), last.status, attempts
    )


def _classify(fn: Callable[[], T]) -> T:
    """Call once; transient problems become _Transient, definite rejections KaggleCallError."""
    try:
        result = fn()
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        detail = _server_message(exc.response)
        if status == 429:
            raise _Transient(f"rate limited by Kaggle (HTTP 429){detail}", _retry_after(exc.response), 429) from None
        if status is not None and status >= 500:
            raise _Transient(f"Kaggle server error (HTTP {status}){detail}", None, status) from None
        if status in (401, 403):
            msg = (
                f"Kaggle rejected the credentials (HTTP {status}){detail}; check kaggle.json, "
                "KAGGLE_USERNAME/KAGGLE_KEY or KAGGLE_API_TOKEN and that you accepted the competition rules"
            )
        elif status == 404:
            msg = f"not found (HTTP 404){detail}: check kaggle.competition and that it accepts submissions"
        else:
            msg = f"Kaggle rejected the request (HTTP {status}){detail}"
        raise KaggleCallError("rejected", redact(msg), status, 1) from None
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise _Transient(f"cannot reach Kaggle at {endpoint()}: {_describe(exc)}") from None
    from kaggle.api.kaggle_api_extended import KaggleApi

    if getattr(result, "message", None) == KaggleApi.COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE:
        raise _Transient("the file upload to Kaggle's storage did not complete")
    return result


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if "Connection refused" in text or "ECONNREFUSED" in text:
        return "connection refused"
    if "Name or service not known" in text or "getaddrinfo" in text or "Failed to resolve" in text:
        return "host name does not resolve (offline?)"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    return type(exc).__name__


def _server_message(response: requests.Response | None) -> str:
    if response is None:
        return ""
    with contextlib.suppress(ValueError, AttributeError):
        body = response.json()
        if isinstance(body, dict) and body.get("message"):
            return f": {str(body['message'])[:200]}"
    return ""


def _retry_after(response: requests.Response | None) -> float | None:
    if response is None:
        return None
    with contextlib.suppress(TypeError, ValueError):
        return max(0.0, float(response.headers.get("Retry-After")))
    return None


def submit_file(api: Any, path: str | os.PathLike, message: str, cfg: KaggleConfig, **retry: Any) -> tuple[int, int]:
    """StartSubmissionUpload -> PUT file -> CreateSubmission; returns (Kaggle ref, attempts)."""
    response, attempts = call_with_retry(
        lambda: api.competition_submit(str(path), message, cfg.competition, quiet=True), cfg, "submit", **retry
    )
    return int(getattr(response, "ref", 0) or 0), attempts


def list_submissions(api: Any, cfg: KaggleConfig, page_size: int = 100, **retry: Any) -> list[dict[str, Any]]:
    """Past submissions as plain dicts: ref, description, status, public_score, file_name, date."""
    subs, _ = call_with_retry(
        lambda: api.competition_submissions(cfg.competition, page_size=page_size), cfg, "status", **retry
    )
    out = []
    for sub in subs or []:
        if sub is None:
            continue
        status = getattr(sub, "status", None)
        out.append(
            {
                "ref": getattr(sub, "ref", None),
                "description": getattr(sub, "description", None),
                "status": getattr(status, "name", status),
                "public_score": getattr(sub, "public_score", None),
                "file_name": getattr(sub, "file_name", None),
                "date": getattr(sub, "date", None),
            }
        )
    return out
