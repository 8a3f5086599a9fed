"""`trustmarket storage ...` through Typer's CliRunner: output, --json, and one line with exit code 2 on bad input."""

from __future__ import annotations

import json

import pytest
from storage_helpers import generated, kubo_vectors
from typer.testing import CliRunner

from backend.cli import app
from backend.settings import get_settings
from backend.storage import LocalStore, compute_cid


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv("TRUSTMARKET_STORE", "local")
    monkeypatch.setenv("TRUSTMARKET_STORE_PATH", str(tmp_path / "store"))
    get_settings.cache_clear()
    runner = CliRunner()
    yield lambda *args: runner.invoke(app, ["storage", *(str(a) for a in args)])
    get_settings.cache_clear()


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.mark.parametrize(("version", "key"), [(0, "cid_v0_default"), (1, "cid_v1_raw_leaves")])
def test_add_prints_kubo_cid(cli, tmp_path, version, key) -> None:
    vector = next(v for v in kubo_vectors() if v["size"] == 262145)
    (tmp_path / "f").write_bytes(generated(vector["seed"], vector["size"]))
    result = cli("add", tmp_path / "f", "--cid-version", version)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == vector[key]
    assert LocalStore(tmp_path / "store").has(vector[key])


def test_add_only_hash_stores_nothing_and_json(cli, tmp_path) -> None:
    (tmp_path / "f").write_bytes(b"hello")
    result = cli("add", tmp_path / "f", "--only-hash", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload == {"cid": compute_cid(b"hello"), "cid_version": 0, "size": 5, "stored": False}
    assert LocalStore(tmp_path / "store").pins() == []


def test_get_to_file_and_stdout(cli, tmp_path) -> None:
    data = generated("cli-get", 300_000)
    (tmp_path / "f").write_bytes(data)
    cid = cli("add", tmp_path / "f").output.strip()
    result = cli("get", cid, "-o", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"cid": cid, "path": str(tmp_path / "out"), "size": len(data)}
    assert (tmp_path / "out").read_bytes() == data
    small = tmp_path / "small"
    small.write_bytes(b"to stdout")
    small_cid = cli("add", small).output.strip()
    assert cli("get", small_cid).stdout_bytes == b"to stdout"


def test_stat_pin_unpin(cli, tmp_path) -> None:
    (tmp_path / "f").write_bytes(generated("cli-stat", 1_000_000))
    cid = cli("add", tmp_path / "f").output.strip()
    info = json.loads(cli("stat", cid, "--json").output)
    assert info == {
        "cid": cid,
        "size": 1_000_000,
        "blocks": 5,
        "cumulative_size": info["cumulative_size"],
        "pinned": True,
    }
    assert "blocks: 5" in cli("stat", cid).output
    assert cli("unpin", cid).exit_code == 0
    assert json.loads(cli("stat", cid, "--json").output)["pinned"] is False
    assert json.loads(cli("pin", cid, "--json").output) == {"cid": cid, "pinned": True}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("get", "not-a-cid", "-o", "OUT"), "not a valid CID"),
        (("stat", compute_cid(b"unknown")), "content not found"),
        (("get", compute_cid(b"unknown"), "-o", "OUT"), "content not found"),
        (("pin", compute_cid(b"unknown")), "content not found"),
        (("add", "MISSING"), "not a file"),
        (("add", "FILE", "--cid-version", "2"), "--cid-version must be 0 or 1"),
        (("get", compute_cid(b"unknown"), "--json"), "--json needs -o FILE"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli, tmp_path, args, message) -> None:
    (tmp_path / "FILE").write_bytes(b"x")
    args = [str(tmp_path / a) if a in ("OUT", "MISSING", "FILE") else a for a in args]
    assert message in one_error_line(cli(*args))


def test_corrupted_block_is_one_line_naming_the_block(cli, tmp_path) -> None:
    (tmp_path / "f").write_bytes(b"will be damaged")
    cid = cli("add", tmp_path / "f").output.strip()
    block = next(p for p in (tmp_path / "store" / "blocks").rglob("*") if p.is_file())
    block.write_bytes(b"damaged")
    line = one_error_line(cli("get", cid, "-o", tmp_path / "out"))
    assert f"corrupted block {cid}" in line


def test_kubo_down_is_one_line(cli, monkeypatch, dead_url, tmp_path) -> None:
    monkeypatch.setenv("TRUSTMARKET_STORE", "kubo")
    monkeypatch.setenv("TRUSTMARKET_KUBO_URL", dead_url)
    get_settings.cache_clear()
    (tmp_path / "f").write_bytes(b"x")
    assert "unreachable" in one_error_line(cli("add", tmp_path / "f"))
    assert cli("add", tmp_path / "f", "--only-hash").exit_code == 0
