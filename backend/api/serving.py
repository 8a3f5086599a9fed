"""How `trustmarket api serve` runs the app under uvicorn: the options that make a restart safe.

On SIGTERM (or Ctrl-C) uvicorn stops accepting connections, lets the requests in flight finish for up to
`TRUSTMARKET_API_SHUTDOWN_GRACE_S` seconds, then runs the app's lifespan shutdown: the feedback timer stops,
unspent quota blocks go back to the database, and the last audit rows are written.

`trustmarket api serve` always runs uvicorn's process supervisor, even for one worker: it holds the listening
socket, so SIGHUP is a rolling restart (each replacement worker answers before the old one drains, within
`TRUSTMARKET_API_WORKER_START_S`) and no connection is refused while new code starts.
"""

from __future__ import annotations

from typing import Any

from backend.api.core.config import ApiSettings

__all__ = ["uvicorn_options"]


def uvicorn_options(api: ApiSettings, *, log_level: str = "info") -> dict[str, Any]:
    """Keyword arguments for `uvicorn.run` / `uvicorn.Config` beside the app, host and port."""
    return {
        "log_level": log_level,
        "timeout_graceful_shutdown": api.shutdown_grace_s,
        "timeout_worker_healthcheck": api.worker_start_s,
        "lifespan": "on",  # the lifespan does the shutdown work above: a server without it must not start
    }
