"""What every command shares: `--signer`, `--json`, `--wei`, one-line errors, and sub-apps loaded only when used."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from backend.chain.keys import create_keystore, dev_account
from backend.cli import COMMANDS, SUB_APPS, app, load_command
from backend.cli._common import format_amount, format_ether, parse_amount
from backend.cli._hints import one_line
from backend.cli._signer import SignerSpec, parse_signer

ROOT = Path(__file__).resolve().parents[3]


def run(env, *args):
    result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    return result.exit_code, result.stdout, result.stderr


def one_error(code, err, *needles):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# -- --signer -------------------------------------------------------------------------------------------------


def test_signer_values(tmp_path, monkeypatch):
    assert parse_signer("dev:3") == SignerSpec("dev", "3")
    assert parse_signer("dev:007") == SignerSpec("dev", "7")
    keystore = tmp_path / "key.json"
    keystore.write_text("{}")
    assert parse_signer(str(keystore)) == SignerSpec("keystore", str(keystore))
    monkeypatch.chdir(tmp_path)
    assert parse_signer("key.json") == SignerSpec("keystore", "key.json")  # a file here is a keystore
    assert parse_signer("alice") == SignerSpec("alias", "alice")
    for bad, why in [
        ("dev:x", "dev:N with N from 0 to 999"),
        ("dev:1000", "dev:N with N from 0 to 999"),
        ("missing.json", "no keystore file at"),
        ("./nowhere/key", "no keystore file at"),
        ("not an alias", "is not dev:N, a keystore file or an Ape account alias"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_signer(bad)


def test_a_bad_signer_is_a_usage_error_in_one_line(tmp_path):
    env = {"TRUSTMARKET_HOME": str(tmp_path)}
    code, _, err = run(env, "trainer", "register", "-p", 1, "--stake", "1", "--signer", "dev:nope")
    one_error(code, err, "--signer", "dev:N with N from 0 to 999", "trustmarket trainer register --help")


def test_the_signer_comes_from_the_environment_or_an_ape_alias(deployed_cli_env, dev_accounts, tmp_path):
    key = tmp_path / "v.json"
    assert run(deployed_cli_env, "verifier", "keygen", "--out", key)[0] == 0
    for i in (7, 1):  # the committee admits by its deployer (dev:0)
        assert (
            run(deployed_cli_env, "verifier", "admit", dev_accounts[i].address, "--signer", "dev:0")[0] == 0
        )
    env = {**deployed_cli_env, "TRUSTMARKET_SIGNER": "dev:7"}
    code, out, err = run(env, "verifier", "register", "--bls-key", key, "--json")
    assert code == 0, err
    assert json.loads(out)["verifier"] == dev_accounts[7].address
    # An Ape alias resolves under $APE_DATA_FOLDER; its password comes from the environment.
    create_keystore(tmp_path / "ape" / "accounts" / "owner.json", "pw", dev_accounts[1].key)
    env = {
        **deployed_cli_env,
        "APE_DATA_FOLDER": str(tmp_path / "ape"),
        "TRUSTMARKET_KEYSTORE_PASSWORD": "pw",
    }
    key = tmp_path / "v1.json"
    assert run(env, "verifier", "keygen", "--out", key)[0] == 0
    code, out, err = run(env, "verifier", "register", "--bls-key", key, "--signer", "owner", "--json")
    assert code == 0, err
    assert json.loads(out)["verifier"] == dev_accounts[1].address
    code, _, err = run(env, "trainer", "register", "-p", 1, "--stake", "1", "--signer", "nobody")
    one_error(code, err, "no Ape account named 'nobody'")


def test_dev_accounts_are_refused_off_a_local_chain():
    from backend.chain.keys import KeyLoadError

    with pytest.raises(KeyLoadError, match="refused on chain 1"):
        SignerSpec("dev", "0").load(1)
    assert SignerSpec("dev", "4").load(31337).address == dev_account(4, 31337).address


# -- amounts ----------------------------------------------------------------------------------------------------


def test_amounts_in_ether_and_wei():
    assert parse_amount("0.1", "--stake") == 10**17
    assert parse_amount("10", "--reward") == 10 * 10**18
    assert parse_amount("100", "--stake", in_wei=True) == 100
    assert format_ether(2) == "0.000000000000000002"
    assert format_ether(10**17) == "0.1"
    assert format_ether(5 * 10**18) == "5"
    assert format_amount(2) == "0.000000000000000002 ETH"
    assert format_amount(2, in_wei=True) == "2 wei"
    for bad, why in [
        ("lots", "is not a number of ether"),
        ("-1", "must be a non-negative amount"),
        ("nan", "must be a non-negative amount"),
        ("0.0000000000000000001", "has more than 18 decimals"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_amount(bad, "--stake")
    with pytest.raises(ValueError, match="not a whole number of wei"):
        parse_amount("1.5", "--stake", in_wei=True)


def test_wei_reads_and_prints_raw_amounts(deployed_cli_env, dev_accounts, tmp_path):
    env = deployed_cli_env
    code, out, err = run(env, "verifier", "members", "--json")
    assert code == 0 and json.loads(out) == [], err
    key = tmp_path / "v.json"
    assert run(env, "verifier", "keygen", "--out", key)[0] == 0
    assert run(env, "verifier", "admit", dev_accounts[5].address, "--signer", "dev:0")[0] == 0
    code, out, err = run(env, "verifier", "register", "--bls-key", key, "--signer", "dev:5", "--stake", "2")
    assert code == 0, err
    assert "with 2 ETH" in out
    code, out, _ = run(env, "verifier", "members", "--wei")
    assert f"{dev_accounts[5].address} {10**17} wei of weight" in out  # the stake, capped at 0.1 ETH
    code, _, err = run(
        env, "verifier", "register", "--bls-key", key, "--signer", "dev:6", "--stake", "0.5", "--wei"
    )
    one_error(code, err, "--stake: '0.5' is not a whole number of wei")


# -- shared options and errors --------------------------------------------------------------------------------


def test_every_command_has_json_and_one_signer_option():
    servers = {"api serve", "api openapi", "rag source serve", "storage serve"}
    seen = 0
    for name in [*SUB_APPS, *COMMANDS]:
        stack = [(name, load_command(name))]
        while stack:
            path, command = stack.pop()
            if hasattr(command, "commands"):
                stack.extend((f"{path} {n}", c) for n, c in command.commands.items())
                continue
            seen += 1
            options = {opt for p in command.params for opt in getattr(p, "opts", [])}
            assert not options & {"--keystore", "--account", "--dev-account"}, path
            assert ("--json" in options) == (path not in servers), path
    assert seen > 30


def test_usage_and_setting_errors_are_one_line(tmp_path):
    env = {"TRUSTMARKET_HOME": str(tmp_path)}
    code, _, err = run(env, "trainer", "register", "-p", "one", "--stake", "1", "--signer", "dev:1")
    one_error(code, err, "--project", "trustmarket trainer register --help")
    code, _, err = run(env, "trainr")
    one_error(code, err, "No such command 'trainr'", "Did you mean 'trainer'")
    code, _, err = run({**env, "TRUSTMARKET_CHAIN_ID": "abc"}, "chain", "status")
    one_error(code, err, "TRUSTMARKET_CHAIN_ID='abc'", "valid integer")
    # Each settings class names its own variables.
    code, _, err = run({**env, "TRUSTMARKET_API_TORCH_THREADS": "0"}, "api", "serve")
    one_error(code, err, "TRUSTMARKET_API_TORCH_THREADS='0'", "greater than or equal to 1")


def test_a_database_that_cannot_be_used_is_one_line(tmp_path):
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from backend.chain.anvil import free_port
    from backend.db import make_engine

    env = {"TRUSTMARKET_HOME": str(tmp_path)}
    code, _, err = run(
        {**env, "TRUSTMARKET_DATABASE_URL": "postgresql+nodriver://me:hunter2@db/x"}, "api", "serve"
    )
    line = one_error(
        code, err, "TRUSTMARKET_DATABASE_URL='postgresql+nodriver://me:***@db/x'", "Can't load plugin"
    )
    assert "hunter2" not in line
    code, _, err = run({**env, "TRUSTMARKET_DATABASE_URL": "::"}, "api", "serve")
    one_error(code, err, "TRUSTMARKET_DATABASE_URL=(not a URL)")
    # A database that is down, or a file that cannot be a database: the operator's to fix, said in one line.
    down = f"postgresql://me:hunter2@127.0.0.1:{free_port()}/x"
    code, _, err = run({**env, "TRUSTMARKET_DATABASE_URL": down}, "api", "serve")
    line = one_error(code, err, "the database (TRUSTMARKET_DATABASE_URL) failed: ", "refused")
    assert "hunter2" not in line
    with (
        pytest.raises(OperationalError) as info,
        make_engine(f"sqlite:///{tmp_path}").connect() as connection,
    ):
        connection.execute(text("SELECT 1"))  # the folder itself
    assert one_line(info.value, None).startswith("the database (TRUSTMARKET_DATABASE_URL) failed: ")


def test_a_bug_keeps_its_traceback():
    assert one_line(RuntimeError("boom"), None) is None
    assert one_line(KeyError("x"), None) is None
    assert one_line(ValueError("bad\nvalue"), None) == "bad value"


@pytest.mark.parametrize(
    "args",
    [["--help"], ["trainer", "--help"], ["storage", "add", "--only-hash", "pyproject.toml"]],
)
def test_help_and_simple_commands_load_neither_web3_nor_torch(args, tmp_path):
    probe = (
        "import sys\n"
        "from backend.cli import main\n"
        f"sys.argv = ['trustmarket', *{args!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "heavy = sorted(m for m in ('web3', 'torch', 'eth_account', 'fastapi', 'numpy') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "TRUSTMARKET_HOME": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout, done.stdout


def test_a_round_too_small_for_its_rule_says_how_it_ends():
    from aggregator.errors import InsufficientUpdates

    line = one_line(
        InsufficientUpdates("multi_krum needs 5 usable updates, got 3 of 3", have=3, need=5), None
    )
    assert line is not None and line.startswith("multi_krum needs 5 usable updates, got 3 of 3: ")
    assert "trustmarket project cancel" in line
