"""SourceRegistry: registration with a bond, operator updates, exit after a delay, batched Beta feedback."""

from __future__ import annotations

import json
import os
import struct
import subprocess
from pathlib import Path

import ape
import pytest

MIN_BOND = 10**17
EXIT_DELAY = 3600
MAX_DELTA = 5000
ROOT = b"\x11" * 32
ENDPOINT = "http://127.0.0.1:9001"


def pack(entries: list[tuple[int, int, int]]) -> bytes:
    return b"".join(struct.pack(">IHH", *entry) for entry in entries)


@pytest.fixture
def admin(accounts):
    return accounts[0]


@pytest.fixture
def evaluator(accounts):
    return accounts[1]


@pytest.fixture
def operator(accounts):
    return accounts[2]


@pytest.fixture
def registry(project, admin, evaluator):
    contract = admin.deploy(project.SourceRegistry, MIN_BOND, EXIT_DELAY, MAX_DELTA)
    contract.grantRole(contract.EVALUATOR_ROLE(), evaluator, sender=admin)
    return contract


def register(registry, operator, endpoint=ENDPOINT, root=ROOT, bond=MIN_BOND) -> int:
    registry.registerSource(endpoint, root, sender=operator, value=bond)
    return registry.sourceCount()


def test_register_records_source_and_emits(registry, operator):
    tx = registry.registerSource(ENDPOINT, ROOT, sender=operator, value=MIN_BOND)
    (event,) = tx.events.filter(registry.SourceRegistered)
    assert event.id == 1 and event.operator == operator.address and event.bond == MIN_BOND
    assert event.endpoint == ENDPOINT and event.commitment == ROOT
    op, bond, status, exit_at, commitment, endpoint = tuple(registry.source(1))
    assert (op, bond, status, exit_at, commitment, endpoint) == (
        operator.address,
        MIN_BOND,
        1,
        0,
        ROOT,
        ENDPOINT,
    )
    assert registry.balance == MIN_BOND


def test_register_reverts_on_bad_input(registry, operator):
    with ape.reverts(registry.BondTooSmall, sent=MIN_BOND - 1, required=MIN_BOND):
        registry.registerSource(ENDPOINT, ROOT, sender=operator, value=MIN_BOND - 1)
    with ape.reverts(registry.EmptyEndpoint):
        registry.registerSource("", ROOT, sender=operator, value=MIN_BOND)
    with ape.reverts(registry.ZeroCommitment):
        registry.registerSource(ENDPOINT, b"\x00" * 32, sender=operator, value=MIN_BOND)


def test_constructor_rejects_bad_config(project, admin):
    for args in [(0, EXIT_DELAY, MAX_DELTA), (MIN_BOND, EXIT_DELAY, 0), (2**96, EXIT_DELAY, MAX_DELTA)]:
        with ape.reverts(project.SourceRegistry.InvalidConfig):
            admin.deploy(project.SourceRegistry, *args)


def test_operator_updates_endpoint_and_commitment(registry, operator, accounts):
    sid = register(registry, operator)
    tx = registry.updateEndpoint(sid, "http://node.example:80", sender=operator)
    assert [e.endpoint for e in tx.events.filter(registry.EndpointUpdated)] == ["http://node.example:80"]
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


def test_feedback_adds_bounded_deltas_with_one_event(registry, operator, evaluator, accounts):
    first = register(registry, operator)
    second = register(registry, accounts[3])
    assert tuple(registry.reliability(first)) == (1000, 4000)
    entries = pack([(first, 3000, 0), (second, 250, 4000)])
    tx = registry.applyFeedback(1, entries, sender=evaluator)
    (event,) = tx.events.filter(registry.FeedbackApplied)
    assert (event.epoch, event.evaluator, event.count, event.entries) == (1, evaluator.address, 2, entries)
    assert len(tx.events) == 1
    registry.applyFeedback(2, pack([(first, 1000, 500)]), sender=evaluator)
    assert tuple(registry.reliability(first)) == (5000, 4500)
    assert tuple(registry.reliability(second)) == (1250, 8000)
    assert registry.epoch() == 2
    alpha, beta, status = registry.reliabilities(1, 2)
    assert (list(alpha), list(beta), list(status)) == ([5000, 1250], [4500, 8000], [1, 1])


def test_feedback_replay_and_stale_epoch_revert(registry, operator, evaluator):
    sid = register(registry, operator)
    entries = pack([(sid, 1000, 0)])
    registry.applyFeedback(1, entries, sender=evaluator)
    # The same signed batch sent again is a replay: its epoch is spent.
    with ape.reverts(registry.WrongEpoch, expected=2, given=1):
        registry.applyFeedback(1, entries, sender=evaluator)
    with ape.reverts(registry.WrongEpoch, expected=2, given=3):
        registry.applyFeedback(3, entries, sender=evaluator)
    assert tuple(registry.reliability(sid)) == (2000, 4000)


def test_feedback_rejects_bad_batches(registry, operator, evaluator, accounts):
    sid = register(registry, operator)
    other = register(registry, accounts[3])
    with ape.reverts(registry.EmptyBatch):
        registry.applyFeedback(1, b"", sender=evaluator)
    with ape.reverts(registry.MalformedBatch, length=7):
        registry.applyFeedback(1, pack([(sid, 1, 1)])[:7], sender=evaluator)
    with ape.reverts(registry.DeltaTooLarge, id=sid, positive=MAX_DELTA + 1, negative=0):
        registry.applyFeedback(1, pack([(sid, MAX_DELTA + 1, 0)]), sender=evaluator)
    with ape.reverts(registry.DeltaTooLarge):
        registry.applyFeedback(1, pack([(sid, 0, MAX_DELTA + 1)]), sender=evaluator)
    with ape.reverts(registry.UnknownSource, id=99):
        registry.applyFeedback(1, pack([(99, 1, 1)]), sender=evaluator)
    # Repeating an id would multiply the per-entry bound: ids must be strictly ascending.
    with ape.reverts(registry.UnsortedBatch, id=sid, previous=sid):
        registry.applyFeedback(1, pack([(sid, MAX_DELTA, 0), (sid, MAX_DELTA, 0)]), sender=evaluator)
    with ape.reverts(registry.UnsortedBatch, id=sid, previous=other):
        registry.applyFeedback(1, pack([(other, 1, 0), (sid, 1, 0)]), sender=evaluator)
    # Ids start at 1, so id 0 fails the ordering check before any storage is read.
    with ape.reverts(registry.UnsortedBatch, id=0, previous=0):
        registry.applyFeedback(1, pack([(0, 1, 0)]), sender=evaluator)
    assert registry.epoch() == 0


def test_only_evaluator_writes_reliability(registry, operator):
    sid = register(registry, operator)
    # The Reliable-dRAG hole: a source scoring itself.
    with ape.reverts(registry.AccessControlUnauthorizedAccount):
        registry.applyFeedback(1, pack([(sid, MAX_DELTA, 0)]), sender=operator)


def test_feedback_still_lands_on_exiting_source(registry, operator, evaluator):
    sid = register(registry, operator)
    registry.requestExit(sid, sender=operator)
    registry.applyFeedback(1, pack([(sid, 0, 2000)]), sender=evaluator)
    assert tuple(registry.reliability(sid)) == (1000, 6000)
    assert list(registry.reliabilities(1, 1)[2]) == [2]


def test_whitewashing_never_beats_a_good_record(registry, operator, evaluator, chain):
    """A source with a good record that exits and re-registers under a new id starts lower, not higher."""
    sid = register(registry, operator)
    registry.applyFeedback(1, pack([(sid, 3000, 1000)]), sender=evaluator)  # 3 helpful answers, 1 not
    alpha, beta = registry.reliability(sid)
    registry.requestExit(sid, sender=operator)
    chain.pending_timestamp += EXIT_DELAY
    registry.withdrawBond(sid, sender=operator)
    fresh = register(registry, operator)
    assert fresh != sid
    fresh_alpha, fresh_beta = registry.reliability(fresh)
    assert (fresh_alpha, fresh_beta) == (registry.PRIOR_POSITIVE(), registry.PRIOR_NEGATIVE())
    # Posterior means compared exactly by cross-multiplication.
    assert fresh_alpha * (alpha + beta) < alpha * (fresh_alpha + fresh_beta)
    # And a fresh identity cannot be (re)scored by anyone but the evaluator.
    with ape.reverts(registry.AccessControlUnauthorizedAccount):
        registry.applyFeedback(2, pack([(fresh, 1, 0)]), sender=operator)


def test_unknown_source_views_revert(registry):
    with ape.reverts(registry.UnknownSource, id=1):
        registry.source(1)
    with ape.reverts(registry.UnknownSource, id=1):
        registry.reliability(1)
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
def test_withdraw_to_hostile_contract_fails_cleanly(registry, admin, chain, hostile_container, reenter):
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
