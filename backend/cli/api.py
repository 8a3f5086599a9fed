"""`trustmarket api`: serve the REST API with uvicorn, list each route's declared access, export the OpenAPI."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from backend.cli._common import console
from backend.cli._context import CliContext, Commands

app = Commands(help="The REST API: serve it, list its routes' access, export its OpenAPI.")


def _build():
    from backend.api import ApiSettings, create_app
    from backend.settings import Settings

    return create_app(Settings(), ApiSettings())


def served_app():
    """The app as a serving process runs it (uvicorn's factory for several workers)."""
    import torch

    from backend.api import ApiSettings

    # Model queries are small and many run at once: one intra-op thread each is several times faster than a
    # thread team woken per query (measured 0.44 ms against 5.7 ms per 16-row digits_mlp query on 2 cores).
    torch.set_num_threads(ApiSettings().torch_threads)
    # A thread waiting for the GIL behind CPU-bound Python (a dRAG query being read) waits up to this long:
    # 1 ms instead of 5 keeps the event loop's cheap requests from queueing behind it.
    sys.setswitchinterval(0.001)
    return _build()


def check_buildable() -> None:
    """Build the app once, in a short-lived process, before any worker starts: a bad configuration is one line
    on stderr, not a traceback inside a worker, and the supervisor (which only holds the socket and restarts
    workers) keeps none of the app's imports resident: torch, web3 and the models cost each worker ~0.5 GB."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        failure = pool.apply(_build_failure)
    if failure is not None:
        message, is_input = failure
        raise (ValueError if is_input else RuntimeError)(message)


def _build_failure() -> tuple[str, bool] | None:
    """None if the served app builds here; else what to print and whether it is bad input (else a bug)."""
    import traceback

    from backend.cli._hints import one_line

    try:
        served_app()
    except Exception as exc:
        message = one_line(exc, None)
        return (message, True) if message is not None else (traceback.format_exc(), False)
    return None


def serving_domain(host: str, port: int) -> str:
    """The SIWE domain for a server at host:port: the host as clients name it (a wildcard bind is reached as
    localhost here; behind a proxy or on another name, set TRUSTMARKET_API_SIWE_DOMAIN)."""
    shown = "localhost" if host in ("0.0.0.0", "::", "") else host
    return f"{shown}:{port}"


@app.command(output=False)
def serve(
    host: Annotated[str | None, typer.Option(help="Interface (default: TRUSTMARKET_API_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: TRUSTMARKET_API_PORT).")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes (state is in the DB).")] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Start the API with uvicorn (configuration from TRUSTMARKET_* and TRUSTMARKET_API_* variables).

    SIGTERM drains: no new connections, requests in flight finish (up to TRUSTMARKET_API_SHUTDOWN_GRACE_S),
    then unspent quota blocks are handed back and the audit log is flushed. SIGHUP restarts the workers one at a
    time without refusing a connection (the supervisor keeps the socket)."""
    from backend.api import ApiSettings
    from backend.api.serving import uvicorn_options

    api = ApiSettings()
    if workers > 1 and api.jwt_secret is None:
        raise ValueError("several workers must share TRUSTMARKET_API_JWT_SECRET (each would make its own)")
    bind_host, bind_port = host or api.host, port or api.port
    siwe_domain = serving_domain(bind_host, bind_port)
    # Sign-in messages must name the host and port this server answers at (unless configured otherwise); the
    # workers inherit the environment, so every one of them expects the same.
    os.environ.setdefault("TRUSTMARKET_API_SIWE_DOMAIN", siwe_domain)
    check_buildable()
    console.print(
        f"trustmarket API on http://{bind_host}:{bind_port} (OpenAPI at /docs); sign-in messages name "
        f"{os.environ['TRUSTMARKET_API_SIWE_DOMAIN']}",
        highlight=False,
    )
    serve_supervised(bind_host, bind_port, workers, uvicorn_options(api, log_level=log_level))


def serve_supervised(host: str, port: int, workers: int, options: dict) -> None:
    """Serve through uvicorn's process supervisor, one worker or several: the supervisor holds the listening
    socket, so a worker's restart never refuses a connection. SIGHUP replaces the workers one at a time, each
    replacement answering before the old worker drains (a rolling restart: new code, new settings); SIGTERM drains
    them all and exits."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(
        "backend.cli.api:served_app", factory=True, host=host, port=port, workers=workers, **options
    )
    console.print(f"supervisor pid {os.getpid()}: `kill -HUP {os.getpid()}` restarts the workers one at a time",
                  highlight=False)  # fmt: skip
    Multiprocess(config, sockets=[config.bind_socket()]).run()


@app.command()
def routes(ctx: typer.Context) -> None:
    """Every route and the access it declares (a scope, or public)."""
    from backend.api.deps import check_routes_declared

    declared = check_routes_declared(_build())

    def render(table: dict[str, list[str]]) -> None:
        width = max(len(k) for k in table)
        for route, markers in sorted(table.items(), key=lambda kv: kv[0].split(" ", 1)[::-1]):
            console.print(f"{route:<{width}}  {', '.join(markers)}", highlight=False)

    CliContext.of(ctx).emit(declared, render)


@app.command(output=False)
def openapi(
    out: Annotated[Path | None, typer.Option("--out", help="Write here instead of stdout.")] = None,
) -> None:
    """The OpenAPI document as JSON."""
    text = json.dumps(_build().openapi(), indent=2, sort_keys=True) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text)
        console.print(f"wrote {out}", highlight=False)
