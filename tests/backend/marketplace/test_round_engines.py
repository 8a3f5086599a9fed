"""A round aggregated on the Ray engine verifies with the local engine, through the runner and the CLI, on a real
anvil with the deployed TrainingMarket; the engine is chosen by --engine or TRUSTMARKET_ENGINE."""

from __future__ import annotations

import json

import pytest
from marketplace_helpers import Marketplace, open_marketplace
from typer.testing import CliRunner

from backend.cli import app
from backend.marketplace.recompute import verify_round

pytestmark = [pytest.mark.chain, pytest.mark.slow]


@pytest.fixture
def marketplace(chain_client, dev_accounts, tmp_path) -> Marketplace:
    return open_marketplace(chain_client, dev_accounts, tmp_path)


def cli(env, *args):
    result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    return result.exit_code, result.stdout, result.stderr


def test_aggregate_on_ray_then_verify_locally(marketplace, deployed_cli_env, ray_engine, tmp_path):
    m, env = marketplace, deployed_cli_env
    project = m.create(rule="multi_krum", rule_params={"f": 1}, n_trainers=6)
    m.submit_honest(project)

    code, out, err = cli(env, "aggregate", "-p", project.id, "--engine", "ray", "--signer", "dev:2", "--json")
    assert code == 0, err
    posted = json.loads(out)
    assert sum(posted["scores"].values()) == pytest.approx(1.0)
    # The update files lived in the spool only while the round was computed.
    assert list((tmp_path / "home" / "spool").iterdir()) == []

    code, out, err = cli(env, "verify", "-p", project.id, "--json")  # the local engine by default
    assert code == 0, err
    assert [r["match"] for r in json.loads(out)] == [True]
    # And the other way round: the runner's recomputation on Ray matches the chain too.
    assert verify_round(m.market, m.store, project.id, 0, engine=ray_engine).match
    code, out, err = cli({**env, "TRUSTMARKET_ENGINE": "ray"}, "verify", "-p", project.id, "--json")
    assert code == 0 and json.loads(out)[0]["match"], err


def test_an_unknown_engine_is_refused_in_one_line(deployed_cli_env):
    code, _, err = cli(deployed_cli_env, "verify", "-p", 0, "--engine", "spark")
    assert code == 2 and "spark" in err
    code, _, err = cli({**deployed_cli_env, "TRUSTMARKET_ENGINE": "spark"}, "verify", "-p", 0)
    assert code == 2 and "TRUSTMARKET_ENGINE" in err and len(err.strip().splitlines()) == 1
