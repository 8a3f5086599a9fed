"""What the models end-to-end tests share: the CLI as its users run it, rounds driven through it, and the tiny
plugin distribution built into wheels."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from sealed_helpers import reveal_round
from typer.testing import CliRunner

from backend.cli import app

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "plugin_models"
OWNER, AGGREGATOR, ARBITER = 1, 2, 3


def cli(env, *args):
    result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    return result.exit_code, result.stdout, result.stderr


def ok(env, *args) -> dict:
    code, out, err = cli(env, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def one_line_error(env, *args) -> str:
    code, _, err = cli(env, *args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    return lines[0]


def create(env, dev_accounts, validation, *extra, trainers=3, rounds=2) -> dict:
    return ok(
        env, "project", "create", "--validation", validation,
        "--aggregator", dev_accounts[AGGREGATOR].address, "--arbiter", dev_accounts[ARBITER].address,
        "--reward", "3", "--stake", "0.1", "--rounds", rounds, "--max-trainers", trainers,
        "--challenge-window", "1", "--signer", f"dev:{OWNER}", *extra,
    )  # fmt: skip


def run_rounds(env, project: int, data: dict[int, Path], rounds: int, tmp: Path, *train_args) -> list[dict]:
    """Every trainer registers, then each round every trainer trains and submits, and the aggregator finalizes.
    The finalized rounds' payloads, and every update's size in bytes."""
    for account in data:
        ok(env, "trainer", "register", "-p", project, "--stake", "0.1", "--signer", f"dev:{account}")
    finalized = []
    for r in range(rounds):
        sizes = []
        for account, path in data.items():
            update = tmp / f"update-{r}-{account}.safetensors"
            done = ok(env, "trainer", "train", "-p", project, "--data", path, "--out", update, *train_args)
            assert done["round"] == r and done["loss_last"] > 0
            sizes.append(update.stat().st_size)
            ok(env, "trainer", "submit", "-p", project, "--update", update, "--signer", f"dev:{account}")
        reveal_round(env, project, data, owner=OWNER)
        result = ok(env, "aggregate", "-p", project, "--signer", f"dev:{AGGREGATOR}")
        assert result["round"] == r
        finalized.append({**result, "update_bytes": sizes})
    return finalized


def verify_all(env, project: int, rounds: int) -> None:
    reports = ok(env, "verify", "-p", project)
    assert [r["round"] for r in reports] == list(range(rounds))
    assert all(r["match"] for r in reports), reports


def build_plugin_wheel(out: Path, version: str) -> Path:
    """The fixture distribution at `version`, built into a wheel in `out` (from a copy: the fixture stays clean)."""
    source = out / f"src-{version}"
    shutil.copytree(FIXTURE, source)
    pyproject = source / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('version = "0.1.0"', f'version = "{version}"'))
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q"]
    subprocess.run([*command, "-w", str(out), str(source)], check=True, capture_output=True)
    (wheel,) = out.glob(f"tm_test_models-{version}-*.whl")
    return wheel


def pip_install_target(wheel: Path, target: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--no-index",
        "-q",
        "--target",
        str(target),
    ]
    subprocess.run([*command, str(wheel)], check=True, capture_output=True)
