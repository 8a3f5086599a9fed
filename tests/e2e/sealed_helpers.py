"""A sealed round's second half from the command line, as its people would drive it on a local chain: the clock
moves past the commit window (`chain advance`), the owner reveals the round's validation shard, and each trainer
reveals the update it committed to."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from typer.testing import CliRunner

from backend.cli import app

__all__ = ["reveal_round"]


def _ok(env: Mapping[str, str], *args) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args], env=dict(env))
    assert result.exit_code == 0, f"{' '.join(map(str, args))}: {result.stderr or result.output}"
    return result.stdout


def reveal_round(
    env: Mapping[str, str],
    project: int,
    trainers: Iterable[int],
    *,
    owner: int = 1,
    commit_window: int = 3600,
) -> None:
    """Close the open round's commits (`commit_window`: the project's --round-duration, or more), reveal its
    validation shard as dev:`owner` and every given trainer's update as dev:i."""
    _ok(env, "chain", "advance", commit_window + 1)  # commits are taken up to the window's last second
    _ok(env, "project", "reveal-validation", project, "--signer", f"dev:{owner}")
    for i in trainers:
        _ok(env, "trainer", "reveal", "-p", project, "--signer", f"dev:{i}")
