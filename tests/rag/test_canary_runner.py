"""`trustmarket rag canaries run`: commit ahead, ask on a real clock, reveal and slash, survive restarts, and every
bad input as one line with nothing lost. One honest and one tampering source over real HTTP on loopback."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from backend.chain.anvil import advance_clock
from backend.chain.client import ChainClient
from backend.chain.deploy import deploy_contracts
from backend.chain.keys import dev_account
from backend.chain.source_registry import CONTRACT, FeedbackEntry, SourceRegistry
from backend.cli import app
from rag.auditor import ASK_SPAN, CanaryAuditor, EpochCanaries
from rag.canaries import Canary, CanarySchedule, canary_pool, decode_canaries, encode_canaries, tampered
from rag.canary_runner import CanaryRunner, stop_on_signals
from rag.corpus import load_corpus
from rag.generators import ExtractiveGenerator
from rag.index import HybridIndex
from rag.node import SourceNode, create_node_app
from rag.orchestrator import Orchestrator
from rag.pollution import pollute
from rag.reader import ExtractiveReader
from rag.serve import start_background_server
from rag.signing import SigningDomain
from rag.sources import SourceDirectory

pytestmark = pytest.mark.chain

PACKAGED = Path(__file__).resolve().parents[2] / "rag" / "data" / "squad_paragraphs.jsonl"
EPOCH = 600  # seconds; the clock is moved, never waited for


@dataclass
class Network:
    env: dict
    client: ChainClient
    registry: SourceRegistry
    honest: int
    tamperer: int
    canaries: list[Canary]  # each has a tampered copy at the tampering source
    canary_file: Path
    home: Path

    def state_file(self, evaluator: int = 0) -> Path:
        address = dev_account(evaluator, self.client.chain_id).address
        return self.home / "rag" / "canaries" / f"{self.registry.address.lower()}-{address.lower()}.json"

    def epoch_start(self, epoch: int) -> int:
        return self.registry.genesis() + epoch * EPOCH

    def move_to(self, timestamp: int) -> None:
        advance_clock(self.client, max(1, timestamp - self.client.timestamp()))


@pytest.fixture
def network(tmp_path, anvil_node, compiled_artifacts, dev_accounts, embedder):
    shared = PACKAGED.parents[2] / ".trustmarket" / "cache" / "embeddings"
    shared.mkdir(parents=True, exist_ok=True)
    home = tmp_path / "home"
    (home / "cache").mkdir(parents=True)
    (home / "cache" / "embeddings").symlink_to(shared)
    env = {"TRUSTMARKET_HOME": str(home), "TRUSTMARKET_CHAIN_URL": anvil_node.url,
           "TRUSTMARKET_DEPLOYMENTS_DIR": str(tmp_path / "deployments"),
           "TRUSTMARKET_ARTIFACTS_PATH": str(compiled_artifacts.path)}  # fmt: skip
    client = ChainClient(anvil_node.url, compiled_artifacts)
    deployments = deploy_contracts(client, dev_accounts[0], network="ethereum:local:foundry", names=(CONTRACT,),
                                   overrides={CONTRACT: {"epochLength": EPOCH}})  # fmt: skip
    deployments.save(tmp_path / "deployments" / "local.json")
    client = ChainClient(anvil_node.url, compiled_artifacts, deployments)
    registry = SourceRegistry(client)
    small = tmp_path / "small.jsonl"
    small.write_text("\n".join(PACKAGED.read_text().splitlines()[:6]) + "\n")
    corpus = load_corpus(small)
    polluted, _ = pollute(corpus, 1.0, seed=0, source_index=1)
    versions = {o.text: d.text for d, o in zip(polluted.documents, corpus.documents, strict=True)}
    canaries = [c for c in canary_pool(corpus, 1.0, seed=0) if tampered(versions[c.passage], c)][:6]
    canary_file = tmp_path / "canaries.jsonl"
    canary_file.write_bytes(encode_canaries(canaries))
    domain = SigningDomain(client.chain_id, registry.address)
    servers, ids = [], []
    for key, documents in ((5, corpus), (6, polluted)):
        operator = dev_account(key, client.chain_id)
        sid = registry.register(operator, f"http://127.0.0.1:{key}/", documents.commitment)
        node = SourceNode(documents, HybridIndex(documents, embedder), operator, sid, domain)
        servers.append(start_background_server(create_node_app(node)))
        registry.update_endpoint(operator, sid, servers[-1].url)
        ids.append(sid)
    try:
        yield Network(env, client, registry, ids[0], ids[1], canaries, canary_file, home)
    finally:
        for server in servers:
            server.stop()


def forget(path: Path, epoch: int, **fields) -> None:
    """Rewrite the state file as a run that died before saving `fields` would have left it."""
    data = json.loads(path.read_text())
    (record,) = (r for r in data["epochs"] if r["epoch"] == epoch)
    record.update(fields)
    path.write_text(json.dumps(data))


def run(env, *args):
    result = CliRunner().invoke(app, ["rag", "canaries", "run", *args], env=env)
    return result.exit_code, result.stdout, result.stderr


REGULAR = (
    "--per-epoch",
    "2",
    "--probation-evidence",
    "0",
)  # sets of 2, no probation (the fixture's are fresh)


def step(network, *extra, signer="dev:0", sizes=REGULAR):
    code, out, err = run(network.env, "--canaries", str(network.canary_file), *sizes, "--once",
                         "--signer", signer, "--json", *extra)  # fmt: skip
    assert code == 0, err
    return json.loads(out)


def test_a_full_cycle_commit_ask_reveal_slash(network):
    registry, evaluator = network.registry, dev_account(0, network.client.chain_id).address
    bonds = {sid: registry.source(sid).bond for sid in (network.honest, network.tamperer)}
    first = step(network)
    epoch = first["epoch"]
    assert first["committed"] == {"epoch": epoch + 1, "count": 2} and first["asked"] == []
    on_chain = registry.canaries(evaluator, epoch + 1)
    assert on_chain.count == 2 and any(on_chain.commitment) and not on_chain.revealed
    state = json.loads(network.state_file().read_text())
    salt = state["epochs"][0]["salt"]
    assert len(bytes.fromhex(salt)) == 32 and salt not in json.dumps(
        first
    )  # the salt stays in the state file
    assert step(network)["committed"] is None  # committed once; nothing is due before the epoch starts

    # Late in the next epoch every canary's seeded moment has passed: both are asked, the tamperer is caught.
    network.move_to(network.epoch_start(epoch + 1) + int(EPOCH * ASK_SPAN) + 1)
    second = step(network)
    assert second["epoch"] == epoch + 1 and len(second["asked"]) == 2
    caught = {sid for a in second["asked"] for sid in a["tampering"]}
    assert caught == {network.tamperer}
    assert second["committed"] == {"epoch": epoch + 2, "count": 2}
    assert registry.reliability(network.honest).observations > 0  # the judged feedback went on chain

    # A fresh process in the following epoch, from the state file alone: reveal, slash with the evidence's hash.
    network.move_to(network.epoch_start(epoch + 2) + 1)
    third = step(network)
    assert third["revealed"] == [epoch + 1]
    assert [(s["source_id"], s["epoch"]) for s in third["slashes"]] == [(network.tamperer, epoch + 1)]
    (revealed,) = registry.revealed_canaries()
    assert revealed[0] == epoch + 1 and revealed[2].hex() == salt
    assert {c.id for c in decode_canaries(revealed[3])} == {a["canary"] for a in second["asked"]}
    (slash,) = registry.slashes()
    (evidence,) = (network.home / "rag" / "canaries" / "evidence").iterdir()
    assert (
        slash.source_id == network.tamperer
        and slash.evidence == hashlib.sha256(evidence.read_bytes()).digest()
    )
    assert json.loads(evidence.read_text())["source_id"] == network.tamperer
    assert registry.source(network.tamperer).bond == bonds[network.tamperer] - slash.amount > 0
    assert registry.source(network.honest).bond == bonds[network.honest]
    assert step(network)["slashes"] == []  # settled once


def test_a_restarted_auditor_reveals_and_slashes(network, embedder):
    """Commit and record in one auditor, then a fresh one from the state file settles the epoch."""
    registry, evaluator = network.registry, dev_account(0, network.client.chain_id)
    path = network.state_file()
    first = CanaryAuditor.load(path, registry, evaluator, CanarySchedule(network.canaries, 1, seed=0))
    epoch = registry.current_epoch() + 1
    (canary,) = first.commit(epoch)
    # Killed after sending the commitment, before saving that it went out: the next run finds it on chain and does
    # not send it again (the registry takes one commitment per evaluator and epoch).
    forget(path, epoch, committed=False)
    first = CanaryAuditor.load(path, registry, evaluator, CanarySchedule(network.canaries, 1, seed=0))
    assert first.commit(epoch) == [canary] and first.epochs[epoch].committed
    network.move_to(network.epoch_start(epoch) + 1)
    orchestrator = Orchestrator(
        SourceDirectory(registry), ExtractiveGenerator(ExtractiveReader(embedder)), embedder
    )
    try:
        result = orchestrator.query(canary.question, gold=canary)
    finally:
        orchestrator.close()
    assert first.record(epoch, canary, result) == [network.tamperer]
    del first
    network.move_to(network.epoch_start(epoch + 1) + 1)
    schedule = CanarySchedule(network.canaries, 1, seed=0)
    second = CanaryAuditor.load(path, registry, evaluator, schedule)
    assert schedule.remaining == len(network.canaries) - 1  # the used canary stays retired
    assert second.due(epoch, 0, 0, EPOCH) == []  # asked already
    made = second.settle(epoch + 1)
    assert [(s, e) for s, e, _ in made] == [(network.tamperer, epoch)]
    assert registry.canaries(evaluator.address, epoch).revealed
    # Killed after the reveal and the slash went out, before either was saved: nothing is sent twice.
    forget(path, epoch, revealed=False, slashed={})
    third = CanaryAuditor.load(path, registry, evaluator, CanarySchedule(network.canaries, 1, 0))
    assert third.settle(epoch + 1) == [] and third.epochs[epoch].slashed.keys() == {network.tamperer}
    assert len(registry.slashes()) == 1
    # An epoch that has started can no longer be committed: skipped with a notice, nothing drawn.
    assert second.commit(registry.current_epoch()) == [] and "too late" in second.notices[-1]


def test_bad_input_is_one_line_and_loses_nothing(network, tmp_path):
    env = network.env

    def fails(*args, env=env):
        code, _, err = run(env, *args)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        return err

    once = (*REGULAR, "--once", "--signer", "dev:0")
    assert "no canary file at" in fails("--canaries", str(tmp_path / "absent.jsonl"), *once)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x"}\n')
    assert "canary line 1" in fails("--canaries", str(bad), *once)
    assert "not both" in fails(*once)
    assert "no corpus at" in fails("--corpus", str(tmp_path / "absent.jsonl"), *once)
    assert "--poll must be a positive" in fails("--canaries", str(network.canary_file), "--poll", "0", *once)
    assert "--probation-per-epoch must not be negative" in fails(
        "--canaries", str(network.canary_file), *once, "--probation-per-epoch", "-1"
    )
    assert "--probation-evidence must be a finite number" in fails(
        "--canaries", str(network.canary_file), *once, "--probation-evidence", "nan"
    )
    few = tmp_path / "few.jsonl"
    few.write_bytes(encode_canaries(network.canaries[:1]))
    assert "too few for 2 per epoch" in fails("--canaries", str(few), *once)
    canaries = ("--canaries", str(network.canary_file))
    assert "cannot reach the chain" in fails(
        *canaries, *once, env={**env, "TRUSTMARKET_CHAIN_URL": "http://127.0.0.1:9"}
    )
    err = fails(*canaries, *REGULAR, "--once", "--signer", "dev:2")
    assert "is not an evaluator" in err and "AccessControlUnauthorizedAccount" in err
    assert not network.state_file(2).exists()  # refused before anything was written
    # A malformed state file is reported and kept as it is, never reset.
    path = network.state_file()
    path.parent.mkdir(parents=True)
    path.write_text('{"version": 1, "epochs": [')
    assert "is malformed" in fails(*canaries, *once)
    assert path.read_text() == '{"version": 1, "epochs": ['
    path.unlink()

    # A run that saved a set and stopped before sending it, restarted once its epoch began: skipped, not a crash.
    registry, evaluator = network.registry, dev_account(0, network.client.chain_id)
    current = registry.current_epoch()
    auditor = CanaryAuditor(registry, evaluator, CanarySchedule(network.canaries, 2, 0), state_path=path)
    auditor.epochs[current] = EpochCanaries(current, network.canaries[4:], bytes(32))
    auditor.save()
    report = step(network)
    assert any("skipped" in n for n in report["notices"]) and report["committed"]["epoch"] == current + 1
    assert json.loads(path.read_text())["epochs"][0]["skipped"] is True

    # No active source: the due canaries wait (nothing asked, nothing lost) and the step still commits ahead.
    for sid, key in ((network.honest, 5), (network.tamperer, 6)):
        registry.request_exit(dev_account(key, network.client.chain_id), sid)
    network.move_to(network.epoch_start(current + 1) + int(EPOCH * ASK_SPAN) + 1)
    report = step(network)
    assert report["asked"] == [] and report["waiting"] == 2
    assert any("no active sources" in n for n in report["notices"])
    assert report["committed"] == {"epoch": current + 2, "count": 2}
    # The pool is used up: the next step still settles, then stops with the reason.
    network.move_to(network.epoch_start(current + 2) + 1)
    code, out, err = run(env, *canaries, *once, "--json")
    assert code == 2 and "too few for 2 per epoch" in err and len(err.strip().splitlines()) == 1
    assert json.loads(out)["revealed"] == [current + 1]


def test_the_loop_steps_until_stopped_and_signals_stop_it(network, embedder):
    registry, evaluator = network.registry, dev_account(0, network.client.chain_id)
    auditor = CanaryAuditor(registry, evaluator, CanarySchedule(network.canaries, 1, 0))
    orchestrator = Orchestrator(
        SourceDirectory(registry), ExtractiveGenerator(ExtractiveReader(embedder)), embedder
    )
    runner = CanaryRunner(auditor, orchestrator, per_epoch=1, probation_evidence=0)
    runner.check()
    reports, before = [], signal.getsignal(signal.SIGTERM)
    with stop_on_signals() as stop:

        def on_step(report):
            reports.append(report)
            if len(reports) == 2:
                os.kill(
                    os.getpid(), signal.SIGTERM
                )  # what a service manager sends: the loop ends after this step

        runner.run(0.01, stop, on_step)
    assert len(reports) == 2 and reports[0].committed == {"epoch": reports[0].epoch + 1, "count": 1}
    assert reports[1].committed is None  # the same epoch: committed once
    assert signal.getsignal(signal.SIGTERM) is before  # the handlers are put back


def test_a_pool_drawn_from_a_corpus(network, tmp_path):
    """Half the small corpus's 15 answerable questions: 8 canaries, fewer than the default probation set of 10 the
    two fresh sources call for, so the set takes what the pool has, with a notice."""
    code, out, err = run(network.env, "--corpus", str(tmp_path / "small.jsonl"), "--share", "0.5", "--once",
                         "--signer", "dev:0", "--json")  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert report["committed"]["count"] == 8 and report["probation"] == [network.honest, network.tamperer]
    assert any("fewer than 10" in n for n in report["notices"])
    state = json.loads(network.state_file().read_text())
    (drawn,) = state["epochs"]
    questions = {q.id for q in load_corpus(tmp_path / "small.jsonl").questions}
    assert len(drawn["canaries"]) == 8 and {c["id"] for c in drawn["canaries"]} <= questions


def test_probation_sizes_the_set_until_every_active_source_has_a_record(network):
    """A source whose record holds fewer than --probation-evidence observations (default 10) gets the next epoch a
    probation-sized set; once every active source has a record the sets are --per-epoch again. A set already drawn
    keeps its size across a restart."""
    registry, evaluator = network.registry, dev_account(0, network.client.chain_id)
    probation = ("--per-epoch", "1", "--probation-per-epoch", "3")

    def record(sid: int, positive: int, negative: int) -> None:  # one epoch's whole budget: 10 observations
        registry.apply_feedback(evaluator, registry.batches() + 1, [FeedbackEntry(sid, positive, negative)])

    record(network.honest, 10_000, 0)
    first = step(network, sizes=probation)
    epoch = first["epoch"]
    assert first["committed"] == {"epoch": epoch + 1, "count": 3} and first["probation"] == [network.tamperer]
    assert registry.canaries(evaluator.address, epoch + 1).count == 3
    # Killed after sending the probation set, before saving that it went out: the restart keeps that set (its 3
    # canaries are on chain) and sizes nothing again.
    forget(network.state_file(), epoch + 1, committed=False)
    again = step(network, sizes=probation)
    assert again["committed"] == {"epoch": epoch + 1, "count": 3} and again["probation"] == []
    record(network.tamperer, 0, 10_000)  # now both have a record
    network.move_to(network.epoch_start(epoch + 1) + 1)
    second = step(network, sizes=probation)
    assert second["committed"] == {"epoch": epoch + 2, "count": 1} and second["probation"] == []
    assert registry.canaries(evaluator.address, epoch + 2).count == 1
