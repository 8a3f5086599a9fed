"""`trustmarket report plot`: the explorer's charts as PNG files (matplotlib), for the terminal and for papers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from backend.cli._common import console, fail
from backend.cli._context import CliContext, Commands

app = Commands(help="Round reports as figures: the explorer's charts written as PNG.")


@app.command()
def plot(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the PNG files (created if missing).")],
    project: Annotated[
        int | None, typer.Option("--project", "-p", help="Project id: accuracy and loss, pool, shares.")
    ] = None,
    sources: Annotated[
        bool, typer.Option("--sources", help="Also the dRAG sources' reliability over time.")
    ] = False,
) -> None:
    """Write the charts the explorer shows for project P (and with --sources the sources' reliability) to the
    --out folder: accuracy-loss.png, pool-paid.png, cumulative-shares.png, source-reliability.png."""
    from backend.api.explorer import series
    from backend.api.explorer.ledger import UnknownEntity
    from backend.api.explorer.plots import write_png
    from backend.api.explorer.service import ExplorerSettings, build_parts

    if project is None and not sources:
        raise fail("nothing to plot: give --project P, --sources, or both")
    if out.exists() and not out.is_dir():
        raise fail(f"--out {out} exists and is not a folder")
    cli = CliContext.of(ctx)
    parts = build_parts(cli.market, cli.store, ExplorerSettings(verify=False))
    charts = []
    if project is not None:
        try:
            view = parts.ledger.project(project)
        except UnknownEntity as exc:
            raise fail(str(exc)) from None
        charts += [series.accuracy_loss(view), series.pool_paid(view), series.cumulative_shares(view)]
        missing = [r for r in view.rounds if r.finalized and r.report is None]
        if missing:
            console.print(
                f"[yellow]note:[/yellow] no report for round(s) {', '.join(str(r.round) for r in missing)} "
                f"({missing[0].report_error}): their accuracy and loss are left out",
                highlight=False,
            )
    if sources:
        if parts.sources is None:
            raise fail("this deployment has no SourceRegistry: no sources to plot")
        charts.append(series.reliability_over_time(parts.sources.sources()))
    try:
        out.mkdir(parents=True, exist_ok=True)
        written = [write_png(chart, out) for chart in charts]
    except OSError as exc:
        raise fail(f"cannot write to {out}: {exc.strerror or exc}") from None

    def render(payload: dict) -> None:
        for path in payload["files"]:
            console.print(f"wrote {path}", highlight=False)

    cli.emit({"files": [str(p) for p in written], "charts": [c.title for c in charts]}, render)
