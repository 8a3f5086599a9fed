"""`trustmarket api`: routes, openapi, and serve (a real uvicorn on a free port)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from backend.chain.anvil import free_port
from backend.cli import app

runner = CliRunner()


@pytest.fixture
def env(tmp_path, monkeypatch):
    values = {
        "TRUSTMARKET_HOME": str(tmp_path),
        "TRUSTMARKET_CHAIN_URL": "http://127.0.0.1:9",  # nothing there: the API must still start
        "TRUSTMARKET_DEPLOYMENTS_DIR": str(tmp_path / "deployments"),
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def test_routes_lists_declared_access(env):
    result = runner.invoke(app, ["api", "routes", "--json"])
    assert result.exit_code == 0, result.output
    declared = json.loads(result.stdout)
    assert declared["GET /v1/me"] == ["account:read"]
    assert declared["GET /healthz"] == ["public"]


def test_openapi_is_written(env, tmp_path):
    out = tmp_path / "openapi.json"
    result = runner.invoke(app, ["api", "openapi", "--out", str(out)])
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    assert "/v1/auth/login" in document["paths"]
    assert not [p for p in document["paths"] if "weights" in p]


def test_production_without_secret_is_one_line_exit_2(env, monkeypatch):
    monkeypatch.setenv("TRUSTMARKET_API_ENVIRONMENT", "production")
    result = runner.invoke(app, ["api", "serve"])
    assert result.exit_code == 2
    assert "TRUSTMARKET_API_JWT_SECRET" in result.output
    assert "Traceback" not in result.output


def test_several_workers_need_a_shared_secret(env):
    result = runner.invoke(app, ["api", "serve", "--workers", "2"])
    assert result.exit_code == 2
    assert "share" in result.output


@contextmanager
def serving(env: dict, *args: str):
    """`trustmarket api serve ARGS` as a process on a free port; yields its base URL once /healthz answers. Its
    output goes to `<home>/serve.log` (a pipe nobody reads would fill up and stall the server)."""
    port = free_port()
    log = Path(env["TRUSTMARKET_HOME"]) / "serve.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "trustmarket"), "api", "serve", "--port", str(port), *args],
        env={**os.environ, **env}, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = (
            time.monotonic() + 120
        )  # a liveness bound, not a timing claim: a loaded machine imports slowly
        while True:
            try:
                httpx.get(f"{url}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "the API did not start"
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.slow
def test_serve_answers_over_http_and_restarts_on_sighup_without_refusing_a_connection(env):
    log = Path(env["TRUSTMARKET_HOME"]) / "serve.log"
    with serving(env) as url:
        assert httpx.get(f"{url}/healthz", timeout=5).json() == {"status": "ok"}
        ready = httpx.get(f"{url}/readyz", timeout=5)
        assert ready.status_code == 503  # no chain at the configured URL
        assert httpx.get(f"{url}/v1/me", timeout=5).status_code == 401

        supervisor = int(re.search(r"supervisor pid (\d+)", log.read_text())[1])
        # The supervisor only holds the socket: the app was built (and checked) in a process that is gone.
        maps = Path(f"/proc/{supervisor}/maps").read_text()
        assert "libtorch" not in maps
        os.kill(supervisor, signal.SIGHUP)
        answered, refused = 0, []
        # A liveness bound, not a timing claim: the replacement imports torch on a loaded machine.
        deadline = time.monotonic() + 120
        # The old worker is retired only once its replacement answers; ask all along the way.
        while "Terminated child process" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            try:
                assert httpx.get(f"{url}/healthz", timeout=30).status_code == 200
                answered += 1
            except httpx.TransportError as exc:
                refused.append(repr(exc))
            time.sleep(0.05)
        assert not refused, refused
        assert answered > 0 and httpx.get(f"{url}/healthz", timeout=30).status_code == 200


def test_serve_expects_sign_ins_for_the_host_and_port_it_serves(deployed_cli_env, monkeypatch):
    from backend.api import ApiSettings
    from backend.cli.api import serving_domain

    assert serving_domain("127.0.0.1", 19800) == "127.0.0.1:19800"
    assert serving_domain("0.0.0.0", 19800) == "localhost:19800"
    monkeypatch.delenv("TRUSTMARKET_API_SIWE_DOMAIN", raising=False)
    with serving(deployed_cli_env, "--host", "127.0.0.1") as url:
        challenge = httpx.post(f"{url}/v1/auth/nonce", timeout=5)
        assert challenge.status_code == 200, challenge.text
        assert challenge.json()["domain"] == url.removeprefix("http://"), challenge.text
        docs = httpx.get(f"{url}/docs", timeout=5)
        assert (
            docs.status_code == 200
            and "cdn." not in docs.text
            and "/docs/assets/swagger-ui-bundle.js" in docs.text
        )
        asset = httpx.get(f"{url}/docs/assets/swagger-ui-bundle.js", timeout=5)
        assert asset.status_code == 200 and len(asset.content) > 100_000
    assert ApiSettings().siwe_domain == "localhost:8000"  # this process's settings were left alone
