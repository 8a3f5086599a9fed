"""`trustmarket report plot`: the explorer's charts as PNG files, and one-line errors for what cannot be drawn."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from backend.cli import app

pytestmark = [pytest.mark.chain, pytest.mark.slow]

PNG = b"\x89PNG\r\n\x1a\n"


def _env(settings) -> dict[str, str]:
    return {
        "TRUSTMARKET_HOME": str(settings.home),
        "TRUSTMARKET_CHAIN_URL": settings.chain_url,
        "TRUSTMARKET_DEPLOYMENTS_DIR": str(settings.deployments_dir),
        "TRUSTMARKET_STORE_PATH": str(settings.store_path),
    }


def run(settings, *args):
    return CliRunner().invoke(app, ["report", "plot", *map(str, args)], env=_env(settings))


def test_plot_writes_the_pages_charts_as_png(showcase, showcase_settings, tmp_path):
    out = tmp_path / "figures"
    result = run(showcase_settings, "--project", showcase.demo_project, "--sources", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    files = json.loads(result.stdout)["files"]
    names = sorted(p.rsplit("/", 1)[1] for p in files)
    assert names == ["accuracy-loss.png", "cumulative-shares.png", "pool-paid.png", "source-reliability.png"]
    for path in files:
        data = (out / path.rsplit("/", 1)[1]).read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000


@pytest.mark.parametrize(
    "args, words",
    [
        (["--project", 99], "no project 99"),
        ([], "nothing to plot"),
    ],
)
def test_what_cannot_be_plotted_is_one_line_and_exit_2(showcase_settings, tmp_path, args, words):
    result = run(showcase_settings, *args, "--out", tmp_path / "x")
    assert result.exit_code == 2 and words in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_an_out_that_is_a_file_or_a_chain_that_is_down_is_refused(showcase, showcase_settings, tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("keep me")
    result = run(showcase_settings, "--project", showcase.demo_project, "--out", taken)
    assert result.exit_code == 2 and "is not a folder" in result.stderr and taken.read_text() == "keep me"
    dead = showcase_settings.model_copy(update={"chain_url": "http://127.0.0.1:9"})
    result = run(dead, "--project", 1, "--out", tmp_path / "y")
    assert result.exit_code == 2 and "127.0.0.1:9" in result.stderr
