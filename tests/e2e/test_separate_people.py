"""The quickstart as separate people: an owner, three trainers, an aggregator and two verifiers, each with their
own TRUSTMARKET_HOME and key, sharing nothing but the chain's URL and a trustless gateway (a real
`trustmarket storage serve` process), from the deployment to every claim.

Nobody reads another's home: the deployment, the project's model, manifest and validation set, every update,
every round's model and report, and the committee's signatures travel through the gateway only. No clock moves:
the committee attests every round, which opens the claims at once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from aggregator.data import load_digits_data, non_iid_splits
from backend.chain.anvil import free_port
from backend.chain.keys import dev_account
from backend.cli import app

pytestmark = [pytest.mark.slow, pytest.mark.chain]

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "the-gateway-write-token"
PEOPLE = {
    "owner": 1,
    "aggregator": 2,
    "trainer1": 4,
    "trainer2": 5,
    "trainer3": 6,
    "verifier1": 7,
    "verifier2": 8,
}
TRAINERS = ["trainer1", "trainer2", "trainer3"]
VERIFIERS = ["verifier1", "verifier2"]
ARBITER = dev_account(3, 31337).address


class Person:
    """One person's shell: their own home and key; the gateway is all they share (besides the chain)."""

    def __init__(self, name: str, home: Path, gateway: str) -> None:
        self.name, self.home = name, home
        self.address = dev_account(PEOPLE[name], 31337).address
        home.mkdir(parents=True)
        self.env = {
            "TRUSTMARKET_HOME": str(home),
            "TRUSTMARKET_SIGNER": f"dev:{PEOPLE[name]}",
            "TRUSTMARKET_STORE": gateway,
            "TRUSTMARKET_STORE_TOKEN": TOKEN,
            # Unset anything the test process may carry, so only this person's settings count.
            "TRUSTMARKET_CHAIN_URL": None,
            "TRUSTMARKET_DEPLOYMENTS_DIR": None,
            "TRUSTMARKET_STORE_PATH": None,
        }

    def run(self, *args, ok: bool = True):
        result = CliRunner().invoke(app, [str(a) for a in args], env=self.env)
        if ok:
            assert result.exit_code == 0, (
                f"{self.name}: {' '.join(map(str, args))}: {result.stderr or result.output}"
            )
        return result

    def json(self, *args):
        return json.loads(self.run(*args, "--json").stdout)


@pytest.fixture
def gateway(tmp_path):
    """The shared gateway, as its operator would run it: a process of its own over a store in its own home."""
    port = free_port()
    env = {**os.environ, "TRUSTMARKET_HOME": str(tmp_path / "gateway"), "TRUSTMARKET_STORE_TOKEN": TOKEN}
    env.pop("TRUSTMARKET_STORE", None)
    env.pop("TRUSTMARKET_STORE_PATH", None)
    server = subprocess.Popen(
        [sys.executable, "-c", "from backend.cli import main; main()", "storage", "serve", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url, timeout=1).json()["writable"]:
                break
        except httpx.HTTPError:
            pass
        assert server.poll() is None, server.stderr.read().decode() if server.stderr else "gateway exited"
        assert time.monotonic() < deadline, "the gateway did not start"
        time.sleep(0.2)
    yield url, tmp_path / "gateway" / "store"
    server.terminate()
    server.wait(10)


@pytest.fixture
def people(tmp_path, gateway):
    url, _ = gateway
    return {name: Person(name, tmp_path / name, url) for name in PEOPLE}


@pytest.fixture(scope="module")
def private_data(tmp_path_factory):
    data = load_digits_data(0)
    validation = (data.validation.X.numpy(), data.validation.y.numpy())
    shards = [(s.X.numpy(), s.y.numpy()) for s in non_iid_splits(data.train, len(TRAINERS), 5.0, 0)]
    return validation, shards


def test_the_quickstart_as_separate_people(people, gateway, private_data):
    owner, aggregator = people["owner"], people["aggregator"]
    validation, shards = private_data
    chain_url = f"http://127.0.0.1:{free_port()}"

    # The owner starts a chain and deploys; everyone else attaches to the deployment by its CID.
    owner.run("chain", "up", "--url", chain_url, "--detach")
    try:
        deployment = owner.json("chain", "deploy")
        for person in people.values():
            if person is not owner:
                person.run("chain", "attach", "--deployments", deployment["cid"], "--url", chain_url)

        # Verifiers join the committee before any round is finalized (a round's snapshot is taken then), once
        # the deployer admitted them.
        for name in VERIFIERS:
            v = people[name]
            owner.run("verifier", "admit", v.address)
            v.run("verifier", "keygen", "--out", v.home / "bls.json")
            v.run("verifier", "register", "--bls-key", v.home / "bls.json")

        # The owner's validation set and each trainer's data live in their own homes only.
        np.savez(owner.home / "validation.npz", X=validation[0], y=validation[1])
        for name, (X, y) in zip(TRAINERS, shards, strict=True):
            np.savez(people[name].home / "data.npz", X=X, y=y)

        created = owner.json(
            "project", "create", "--validation", owner.home / "validation.npz", "--aggregator", aggregator.address,
            "--arbiter", ARBITER, "--reward", "3", "--stake", "0.1", "--rounds", "2", "--rule", "median",
        )  # fmt: skip
        project = created["project"]
        for name in TRAINERS:
            people[name].run("trainer", "register", "-p", project, "--stake", "0.1")

        for round_ in range(2):
            for name in TRAINERS:
                t = people[name]
                trained = t.json(
                    "trainer", "train", "-p", project, "--data", t.home / "data.npz", "--out", t.home / "update.st",
                    "--epochs", "2",
                )  # fmt: skip
                assert trained["round"] == round_
                # A commitment only: the update stays in the trainer's home until its reveal.
                committed = t.json("trainer", "submit", "-p", project, "--update", t.home / "update.st")
                assert Path(committed["sealed"]).is_relative_to(t.home / "sealed")
            # The round's commits close (an hour on the chain's clock); the owner reveals its validation shard,
            # then every trainer stores and reveals its update.
            owner.run("chain", "advance", "3601")
            shard = owner.json("project", "reveal-validation", project)
            assert shard["round"] == round_
            for name in TRAINERS:
                revealed = people[name].json("trainer", "reveal", "-p", project)
                assert revealed["round"] == round_
            finalized = aggregator.json("aggregate", "-p", project)
            assert finalized["round"] == round_
            assert sum(finalized["scores"].values()) == pytest.approx(1.0)
            # Each verifier recomputes from what the chain and the gateway hold, signs into the gateway's mailbox;
            # the second signature makes the quorum and attests.
            passes = [
                people[name].json("verifier", "run", "--bls-key", people[name].home / "bls.json", "--once")
                for name in VERIFIERS
            ]
            assert {"project": project, "round": round_, "action": "attested"}.items() <= next(
                o for o in passes[-1] if o["round"] == round_
            ).items(), passes
            assert people["verifier1"].json("verifier", "status", "--project", project, "--round", round_)[
                "attested"
            ]

        # Anyone can check the aggregator: the third-party recomputation matches.
        assert [r["match"] for r in people["verifier2"].json("verify", "-p", project)] == [True, True]

        # An attested round stays challengeable until its window ends (an hour): claims open after it, and stake
        # and pool come back to the last wei.
        assert owner.json("project", "status", project)["claims_open"] is False
        owner.run("chain", "advance", "3601")
        paid = 0
        for name in [*TRAINERS, "owner"]:
            paid += int(people[name].json("trainer", "claim", "-p", project)["amount_wei"])
        assert paid == 3 * 10**18 + 3 * 10**17
        status = owner.json("project", "status", project)
        assert status["claims_open"] is True

        # Nobody's home holds a content store: everything travelled through the gateway.
        for person in people.values():
            assert not (person.home / "store").exists(), person.name
    finally:
        owner.run("chain", "down", "--url", chain_url, ok=False)
