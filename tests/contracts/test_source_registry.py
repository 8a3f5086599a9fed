"""SourceRegistry: bonds per operator and per corpus, records bound to corpus and endpoint, exits, hostile operators.

Feedback, epoch budgets, forgetting, canaries and slashing are in test_source_registry_feedback.py. The F-7
regressions of issue #12 (each fails on the registry before it) are marked `F-7` in their docstrings.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import ape
import pytest
from source_registry_helpers import (
    ENDPOINT,
    EPOCH,
    EXIT_DELAY,
    MAX_DELTA,
    MAX_EVIDENCE,
    MIN_BOND,
    ROOT,
    SLASH_BPS,
    deploy,
    leave,
    pack,
    register,
)


@pytest.fixture
def evaluator(accounts):
    return accounts[1]


@pytest.fixture
def operator(accounts):
    return accounts[2]


@pytest.fixture
def registry(project, accounts, evaluator):
    return deploy(project, accounts[0], evaluator)


def test_register_records_source_and_emits(registry, operator):
    tx = registry.registerSource(ENDPOINT, ROOT, sender=operator, value=MIN_BOND)
    (event,) = tx.events.filter(registry.SourceRegistered)
    assert (event.id, event.operator, event.bond, event.endpoint, event.commitment, event.inheritedFrom) == (
        1, operator.address, MIN_BOND, ENDPOINT, ROOT, 0,
    )  # fmt: skip
    assert tuple(registry.source(1)) == (operator.address, MIN_BOND, 1, 0, ROOT, ENDPOINT)
    assert tuple(registry.reliability(1)) == (registry.PRIOR_POSITIVE(), registry.PRIOR_NEGATIVE())
    assert registry.sourceOfCommitment(ROOT) == 1 and registry.activeSources(operator) == 1
    assert registry.balance == MIN_BOND


def test_register_reverts_on_bad_input(registry, operator):
    with ape.reverts(registry.BondTooSmall, sent=MIN_BOND - 1, required=MIN_BOND):
        registry.registerSource(ENDPOINT, ROOT, sender=operator, value=MIN_BOND - 1)
    with ape.reverts(registry.EmptyEndpoint):
        registry.registerSource("", ROOT, sender=operator, value=MIN_BOND)
    with ape.reverts(registry.ZeroCommitment):
        registry.registerSource(ENDPOINT, b"\x00" * 32, sender=operator, value=MIN_BOND)


@pytest.mark.parametrize(
    "args",
    [
        (0, EXIT_DELAY, MAX_DELTA, EPOCH, MAX_EVIDENCE, SLASH_BPS),
        (2**96, EXIT_DELAY, MAX_DELTA, EPOCH, MAX_EVIDENCE, SLASH_BPS),
        (MIN_BOND, EXIT_DELAY, 0, EPOCH, MAX_EVIDENCE, SLASH_BPS),
        (MIN_BOND, EXIT_DELAY, MAX_DELTA, 0, MAX_EVIDENCE, SLASH_BPS),
        (MIN_BOND, EXIT_DELAY, MAX_DELTA, EPOCH, 5000, SLASH_BPS),
        (MIN_BOND, EXIT_DELAY, MAX_DELTA, EPOCH, MAX_EVIDENCE, 10_001),
    ],
    ids=["zero-bond", "bond-over-uint96", "zero-delta", "zero-epoch", "evidence-at-prior", "slash-over-100%"],
)
def test_constructor_rejects_bad_config(project, accounts, args):
    with ape.reverts(project.SourceRegistry.InvalidConfig):
        accounts[0].deploy(project.SourceRegistry, *args)


def test_an_operators_bond_grows_with_its_live_sources(registry, operator, chain):
    """Sybils cost money: the n-th live source of one operator locks n times the minimum (1+2+...+7 = 28x)."""
    for n in range(1, 8):
        assert registry.requiredBond(operator) == n * MIN_BOND
        with ape.reverts(registry.BondTooSmall, sent=n * MIN_BOND - 1, required=n * MIN_BOND):
            registry.registerSource(f"http://s{n}", bytes([n]) * 32, sender=operator, value=n * MIN_BOND - 1)
        register(registry, operator, f"http://s{n}", bytes([n]) * 32)
    assert registry.balance == 28 * MIN_BOND and registry.activeSources(operator) == 7
    registry.requestExit(3, sender=operator)  # an exiting source no longer counts
    assert registry.requiredBond(operator) == 7 * MIN_BOND


def test_a_corpus_and_an_endpoint_are_held_by_one_live_source(registry, operator, accounts, chain):
    """Duplicate commitments are refused (copies add no independent evidence), while live or exiting."""
    sid = register(registry, operator)
    other = accounts[3]
    with ape.reverts(registry.CommitmentTaken, commitment=ROOT, holder=sid):
        registry.registerSource("http://elsewhere", ROOT, sender=other, value=MIN_BOND)
    with ape.reverts(registry.EndpointTaken, endpoint=ENDPOINT, holder=sid):
        registry.registerSource(ENDPOINT, b"\x22" * 32, sender=other, value=MIN_BOND)
    second = register(registry, other, "http://elsewhere", b"\x22" * 32)
    with ape.reverts(registry.CommitmentTaken, commitment=ROOT, holder=sid):
        registry.updateCommitment(second, ROOT, sender=other)
    with ape.reverts(registry.EndpointTaken, endpoint=ENDPOINT, holder=sid):
        registry.updateEndpoint(second, ENDPOINT, sender=other)
    registry.requestExit(sid, sender=operator)
    with ape.reverts(registry.CommitmentTaken):
        registry.registerSource("http://third", ROOT, sender=accounts[4], value=MIN_BOND)


def test_operator_updates_endpoint_and_commitment(registry, operator, accounts):
    sid = register(registry, operator)
    tx = registry.updateEndpoint(sid, "http://node.example:80", sender=operator)
    assert [e.endpoint for e in tx.events.filter(registry.EndpointUpdated)] == ["http://node.example:80"]
    registry.updateEndpoint(sid, "http://node.example:80", sender=operator)  # its own endpoint again: fine
    tx = registry.updateCommitment(sid, b"\x22" * 32, sender=operator)
    assert [e.commitment for e in tx.events.filter(registry.CommitmentUpdated)] == [b"\x22" * 32]
    assert tuple(registry.source(sid))[4:] == (b"\x22" * 32, "http://node.example:80")
    stranger = accounts[5]
    with ape.reverts(registry.NotOperator, id=sid, caller=stranger.address):
        registry.updateEndpoint(sid, "http://evil", sender=stranger)
    with ape.reverts(registry.NotOperator):
        registry.updateCommitment(sid, b"\x33" * 32, sender=stranger)
    with ape.reverts(registry.EmptyEndpoint):
        registry.updateEndpoint(sid, "", sender=operator)
    with ape.reverts(registry.ZeroCommitment):
        registry.updateCommitment(sid, b"\x00" * 32, sender=operator)
    with ape.reverts(registry.UnknownSource, id=9):
        registry.updateEndpoint(9, "http://x", sender=operator)


def test_a_new_commitment_resets_confidence_and_keeps_the_mean(registry, operator, evaluator):
    """F-7: changing the commitment kept the whole reputation; now the evidence falls to the prior's weight."""
    sid = register(registry, operator)
    registry.applyFeedback(
        1, pack([(sid, 5000, 0)]), sender=evaluator
    )  # Beta(6, 4): mean 0.6, 10 observations
    tx = registry.updateCommitment(sid, b"\x22" * 32, sender=operator)
    alpha, beta = registry.reliability(sid)
    assert (alpha, beta) == (3000, 2000)  # mean 0.6 kept, weight 5 observations (the prior's)
    (event,) = tx.events.filter(registry.CommitmentUpdated)
    assert (event.alpha, event.beta) == (alpha, beta)
    # A record already at the prior's weight (a newcomer) is left as it is: no way to whitewash by re-committing.
    fresh = register(registry, operator, "http://second", b"\x44" * 32)
    registry.updateCommitment(fresh, b"\x45" * 32, sender=operator)
    assert tuple(registry.reliability(fresh)) == (1000, 4000)


def test_reregistering_inherits_the_old_record(registry, operator, evaluator, accounts, chain):
    """F-7: a source with a bad record that re-registered with the same endpoint and corpus started afresh."""
    sid = register(registry, operator)
    registry.applyFeedback(1, pack([(sid, 0, 5000)]), sender=evaluator)
    bad = tuple(registry.reliability(sid))
    leave(registry, operator, sid, chain)
    for endpoint, root in [(ENDPOINT, ROOT), ("http://moved", ROOT), (ENDPOINT, b"\x99" * 32)]:
        again = register(registry, operator, endpoint, root)
        assert tuple(registry.reliability(again)) == bad
        assert registry.source(again)[2] == 1  # Active again, with the old record
        leave(registry, operator, again, chain)
    # Another wallet serving the same corpus takes the record too: it is the corpus's, not the key's.
    tx = registry.registerSource("http://other", ROOT, sender=accounts[3], value=MIN_BOND)
    (event,) = tx.events.filter(registry.SourceRegistered)
    assert event.inheritedFrom == 3  # the last source that held this corpus
    assert tuple(registry.reliability(event.id)) == bad


def test_inheriting_from_two_records_takes_the_worse(registry, operator, evaluator, accounts, chain):
    good = register(registry, operator, "http://good", b"\x01" * 32)
    bad = register(registry, accounts[3], "http://bad", b"\x02" * 32)
    registry.applyFeedback(1, pack([(good, 5000, 0), (bad, 0, 5000)]), sender=evaluator)
    leave(registry, operator, good, chain)
    leave(registry, accounts[3], bad, chain)
    tx = registry.registerSource("http://good", b"\x02" * 32, sender=accounts[4], value=MIN_BOND)
    (event,) = tx.events.filter(registry.SourceRegistered)
    assert event.inheritedFrom == bad
    assert tuple(registry.reliability(event.id)) == tuple(registry.reliability(bad))
    # Moving an active source onto a withdrawn source's worse corpus brings that record along as well.
    fresh = register(registry, accounts[5], "http://fresh", b"\x03" * 32)
    registry.updateCommitment(fresh, b"\x01" * 32, sender=accounts[5])  # the good one's: mean kept (0.2)
    assert tuple(registry.reliability(fresh)) == (1000, 4000)


def test_exit_delay_then_pull_bond(registry, operator, chain):
    sid = register(registry, operator)
    with ape.reverts(registry.SourceNotExiting, id=sid):
        registry.withdrawBond(sid, sender=operator)
    tx = registry.requestExit(sid, sender=operator)
    (event,) = tx.events.filter(registry.ExitRequested)
    assert event.availableAt == registry.source(sid)[3]
    with ape.reverts(registry.SourceNotActive, id=sid):
        registry.requestExit(sid, sender=operator)
    with ape.reverts(registry.SourceNotActive, id=sid):
        registry.updateEndpoint(sid, "http://later", sender=operator)
    with ape.reverts(registry.ExitNotReady):
        registry.withdrawBond(sid, sender=operator)
    chain.pending_timestamp = event.availableAt
    before = operator.balance
    tx = registry.withdrawBond(sid, sender=operator)
    assert [(e.id, e.amount) for e in tx.events.filter(registry.BondWithdrawn)] == [(sid, MIN_BOND)]
    assert operator.balance == before + MIN_BOND - tx.total_fees_paid
    assert registry.balance == 0
    assert tuple(registry.source(sid))[1:3] == (0, 3)
    with ape.reverts(registry.SourceNotExiting, id=sid):
        registry.withdrawBond(sid, sender=operator)


def test_withdraw_only_by_operator_and_known_source(registry, operator, accounts, chain):
    sid = register(registry, operator)
    registry.requestExit(sid, sender=operator)
    chain.pending_timestamp += EXIT_DELAY + 1
    with ape.reverts(registry.NotOperator):
        registry.withdrawBond(sid, sender=accounts[6])
    with ape.reverts(registry.UnknownSource, id=7):
        registry.withdrawBond(7, sender=operator)


def test_whitewashing_never_beats_a_good_record(registry, operator, evaluator, chain):
    """A source with a good record that exits and comes back as a new corpus and endpoint starts lower."""
    sid = register(registry, operator)
    registry.applyFeedback(1, pack([(sid, 3000, 1000)]), sender=evaluator)  # 3 helpful answers, 1 not
    alpha, beta = registry.reliability(sid)
    leave(registry, operator, sid, chain)
    fresh = register(registry, operator, "http://new", b"\x77" * 32)
    fresh_alpha, fresh_beta = registry.reliability(fresh)
    assert (fresh_alpha, fresh_beta) == (registry.PRIOR_POSITIVE(), registry.PRIOR_NEGATIVE())
    # Posterior means compared exactly by cross-multiplication.
    assert fresh_alpha * (alpha + beta) < alpha * (fresh_alpha + fresh_beta)
    with ape.reverts(registry.AccessControlUnauthorizedAccount):
        registry.applyFeedback(2, pack([(fresh, 1, 0)]), sender=operator)


def test_unknown_source_views_revert(registry):
    with ape.reverts(registry.UnknownSource, id=1):
        registry.source(1)
    with ape.reverts(registry.UnknownSource, id=1):
        registry.reliability(1)
    with ape.reverts(registry.UnknownSource, id=1):
        registry.remainingBudget(1)
    with ape.reverts(registry.UnknownSource, id=1):
        registry.reliabilities(1, 1)
    with ape.reverts(registry.UnknownSource, id=1):
        registry.verifyDocument(1, b"\x01" * 32, [])


def test_verify_document_against_commitment(registry, operator):
    from eth_utils import keccak

    leaves = [keccak(text=f"doc {i}") for i in range(2)]
    root = keccak(b"".join(sorted(leaves)))
    sid = register(registry, operator, root=root)
    assert registry.verifyDocument(sid, leaves[0], [leaves[1]])
    assert not registry.verifyDocument(sid, keccak(text="forged"), [leaves[1]])


# An operator that is a contract: it can refuse the bond or try to re-enter `withdrawBond` from `receive`.
OPERATOR_SOURCE = """
// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;
interface IRegistry {
    function registerSource(string calldata, bytes32) external payable returns (uint32);
    function requestExit(uint32) external;
    function withdrawBond(uint32) external;
}
contract HostileOperator {
    IRegistry public registry;
    uint32 public id;
    bool public reenter;
    constructor(IRegistry registry_) payable { registry = registry_; }
    function join(bool reenter_) external {
        reenter = reenter_;
        id = registry.registerSource{value: address(this).balance}("http://hostile", bytes32(uint256(1)));
    }
    function leave() external { registry.requestExit(id); }
    function withdraw() external { registry.withdrawBond(id); }
    receive() external payable {
        if (!reenter) revert("no thanks");
        registry.withdrawBond(id);
    }
}
"""


@pytest.fixture(scope="module")
def hostile_container():
    """Compiled through the same solc the project uses (standard JSON: the shim's one mode)."""
    from ethpm_types import ContractType

    request = {
        "language": "Solidity",
        "sources": {"HostileOperator.sol": {"content": OPERATOR_SOURCE}},
        "settings": {"evmVersion": "cancun", "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}}},
    }
    solc = Path(os.environ["SOLCX_BINARY_PATH"]) / "solc-v0.8.30"
    result = subprocess.run(
        [str(solc), "--standard-json"], input=json.dumps(request), capture_output=True, text=True, check=True
    )
    output = json.loads(result.stdout)["contracts"]["HostileOperator.sol"]["HostileOperator"]
    contract_type = ContractType(
        contractName="HostileOperator",
        abi=output["abi"],
        deploymentBytecode={"bytecode": "0x" + output["evm"]["bytecode"]["object"]},
    )
    return ape.contracts.ContractContainer(contract_type)


@pytest.mark.parametrize("reenter", [False, True], ids=["refuses", "reenters"])
def test_withdraw_to_hostile_contract_fails_cleanly(registry, accounts, chain, hostile_container, reenter):
    admin = accounts[0]
    hostile = admin.deploy(hostile_container, registry.address, value=MIN_BOND)
    hostile.join(reenter, sender=admin)
    hostile.leave(sender=admin)
    chain.pending_timestamp += EXIT_DELAY
    # A refused payment, or one whose receive re-enters (stopped by the guard), reverts whole with the
    # receiver's own reason (Address.sendValue bubbles it up): bond kept.
    expected = registry.ReentrancyGuardReentrantCall if reenter else "no thanks"
    with ape.reverts(expected):
        hostile.withdraw(sender=admin)
    assert registry.balance == MIN_BOND
    assert tuple(registry.source(hostile.id()))[1:3] == (MIN_BOND, 2)


def test_bond_above_uint96_is_refused(registry, operator):
    # Bonds are stored in 96 bits; anvil lets the test fund an account past that.
    operator.balance = 2**97
    with ape.reverts(registry.BondTooLarge, sent=2**96):
        registry.registerSource(ENDPOINT, ROOT, sender=operator, value=2**96)
