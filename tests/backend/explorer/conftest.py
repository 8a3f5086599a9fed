"""One showcase chain per test run for every explorer test (the demo's rounds, a running project, sources), and
apps over it: the real one, and ones whose chain or store is missing, empty, corrupted or down.

Under pytest-xdist (`make test` runs files on two workers) the first worker to need the showcase builds it and
saves anvil's state (`anvil_dumpState`: blocks, logs and accounts) beside its store; the others load that state
into an anvil of their own (a second or so instead of the build's 20-80 s). Each worker still has its own node,
so the tests that mine or revert do not see each other.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import shutil
from pathlib import Path

import pytest
from explorer_helpers import explorer_client


def _saved_showcase(folder: Path, build):
    """The showcase saved in `folder` by another worker of this run, or `build()`'s, saved there for them."""
    from backend.api.explorer.showcase import Showcase
    from backend.chain.deployments import Deployments

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # held while the first worker builds; released when the file closes
        saved = folder / "showcase.json"
        if saved.exists():
            fields = json.loads(saved.read_text())
            fields["deployments"] = Deployments.load(folder / "deployments.json")
            fields["store_path"] = Path(fields["store_path"])
            return Showcase(**fields), (folder / "anvil-state.txt").read_text()
        showcase, state = build(folder)
        showcase.deployments.save(folder / "deployments.json")
        (folder / "anvil-state.txt").write_text(state)
        fields = {f.name: getattr(showcase, f.name) for f in dataclasses.fields(showcase)}
        fields.pop("deployments")
        fields["store_path"] = str(showcase.store_path)
        saved.write_text(json.dumps(fields))
        return showcase, None


@pytest.fixture(scope="session")
def showcase(tmp_path_factory, compiled_artifacts, worker_id):
    from backend.api.explorer.showcase import build_showcase
    from backend.chain.anvil import start_anvil

    node = start_anvil(attach=False)

    def node_rpc(method: str, *params):
        from web3 import Web3

        response = Web3(Web3.HTTPProvider(node.url)).provider.make_request(method, list(params))
        if "error" in response:
            raise RuntimeError(f"{method}: {response['error']}")
        return response["result"]

    def build(folder: Path):
        return build_showcase(folder / "showcase", chain_url=node.url), node_rpc("anvil_dumpState")

    try:
        if worker_id == "master":  # one process: nothing to share
            built = build_showcase(tmp_path_factory.mktemp("showcase"), chain_url=node.url)
        else:  # xdist: basetemp's parent is this run's, shared by its workers
            built, state = _saved_showcase(tmp_path_factory.getbasetemp().parent / "explorer-showcase", build)
            if state is not None:
                node_rpc("anvil_loadState", state)
                built = dataclasses.replace(built, chain_url=node.url)
        yield built
    finally:
        node.stop()


@pytest.fixture(scope="session")
def showcase_settings(showcase, tmp_path_factory):
    return showcase.settings(tmp_path_factory.mktemp("explorer-home"))


@pytest.fixture(scope="session")
def client(showcase_settings):
    with explorer_client(showcase_settings) as c:
        yield c


@pytest.fixture(scope="session")
def ledger(client):
    return client.app.state.explorer.parts().ledger


@pytest.fixture(scope="session")
def market(ledger):
    return ledger.market


@pytest.fixture
def corrupted_store_settings(showcase, showcase_settings, tmp_path):
    """A copy of the showcase's store in which every block of every round report has one byte flipped."""
    copy = tmp_path / "store"
    shutil.copytree(showcase.store_path, copy)
    flipped = 0
    for block in (copy / "blocks").rglob("*"):
        if block.is_file() and b'"outlier_config"' in (data := block.read_bytes()):
            at = data.index(b'"outlier_config"')
            block.write_bytes(data[:at] + b"X" + data[at + 1 :])
            flipped += 1
    assert flipped
    return showcase_settings.model_copy(update={"store_path": copy})
