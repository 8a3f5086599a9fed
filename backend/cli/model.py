"""`trustmarket model`: the models a project can use, and installing a project's plugin model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from backend.cli._common import console
from backend.cli._context import CliContext, Commands

app = Commands(help="Models: list what can be used here, install a project's plugin model.")


@app.command("list")
def list_models(ctx: typer.Context) -> None:
    """The built-in models and the plugin models installed here (entry-point group trustmarket.models)."""
    from aggregator.models import BUILTIN_MODELS, installed_plugins

    cli = CliContext.of(ctx)
    plugins = installed_plugins()
    payload = {
        "builtin": [f"builtin:{name}" for name in BUILTIN_MODELS],
        "plugins": {
            f"plugin:{p.name}": {"distribution": p.distribution, "version": p.version, "target": p.target}
            for p in plugins.values()
        },
    }

    def render(p: dict) -> None:
        console.print("built in: " + ", ".join(p["builtin"]))
        for uri, info in sorted(p["plugins"].items()):
            console.print(f"{uri}: {info['distribution']} {info['version']} ({info['target']})")
        if not p["plugins"]:
            console.print("no plugin models installed")

    cli.emit(payload, render)


@app.command()
def install(
    ctx: typer.Context,
    project: Annotated[int, typer.Option("--project", "-p", help="Project id.")],
    target: Annotated[
        Path | None,
        typer.Option(
            help="Install into this folder (pip --target; put it on PYTHONPATH) instead of this Python."
        ),
    ] = None,
) -> None:
    """Install the plugin wheel the project's owner stored (verified by its sha256; pip, no dependencies), so this
    machine runs exactly the model code the project pins."""
    from backend.marketplace.manifest import ContentRef
    from backend.marketplace.models import install_plugin_wheel
    from backend.marketplace.publish import load_manifest

    cli = CliContext.of(ctx)
    info = cli.market.project(project)
    manifest = load_manifest(cli.store, ContentRef(cid=info.config_cid, sha256=info.config_sha256))
    with cli.step(f"installing {manifest.model.distribution}=={manifest.model.version}"):
        installed = install_plugin_wheel(cli.store, manifest, target)
    payload = {
        "project": project,
        "installed": installed,
        "model": manifest.model.uri,
        "target": str(target) if target else None,
    }
    cli.emit(payload, lambda p: console.print(f"installed {p['installed']} ({p['model']})"))
