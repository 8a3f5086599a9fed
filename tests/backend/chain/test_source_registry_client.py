"""The SourceRegistry facade (web3) against anvil: packing, reads, writes and named reverts."""

from __future__ import annotations

import pytest

import backend.chain.source_registry as sr
from backend.chain.errors import revert_class
from backend.chain.source_registry import (
    FeedbackEncodingError,
    FeedbackEntry,
    SourceStatus,
    decode_feedback,
    deploy_source_registry,
    encode_feedback,
)

pytestmark = pytest.mark.chain

ROOT = b"\x42" * 32


def test_encode_sorts_and_round_trips():
    entries = [FeedbackEntry(7, 1, 2), FeedbackEntry(3, 65535, 0)]
    data = encode_feedback(entries)
    assert data == bytes.fromhex("00000003ffff00000000000700010002")
    assert decode_feedback(data) == (FeedbackEntry(3, 65535, 0), FeedbackEntry(7, 1, 2))


@pytest.mark.parametrize(
    "entries, message",
    [
        ([], "at least one"),
        ([FeedbackEntry(0, 1, 1)], "outside"),
        ([FeedbackEntry(2**32, 1, 1)], "outside"),
        ([FeedbackEntry(1, 65536, 0)], "positive"),
        ([FeedbackEntry(1, 0, -1)], "negative"),
        ([FeedbackEntry(1, 0.5, 0)], "positive"),
        ([FeedbackEntry(4, 1, 0), FeedbackEntry(4, 0, 1)], "twice"),
    ],
)
def test_encode_rejects_what_the_contract_would(entries, message):
    with pytest.raises(FeedbackEncodingError, match=message):
        encode_feedback(entries)


def test_decode_rejects_partial_entries():
    with pytest.raises(FeedbackEncodingError, match="whole"):
        decode_feedback(b"\x00" * 9)


@pytest.fixture
def registry(chain_client, dev_accounts):
    return deploy_source_registry(
        chain_client, dev_accounts[0], min_bond=10**15, exit_delay=100, evaluator=dev_accounts[1].address
    )


def test_constants_match_the_contract(registry):
    call = registry._call
    assert (call("SCALE"), call("PRIOR_POSITIVE"), call("PRIOR_NEGATIVE")) == (
        sr.SCALE,
        sr.PRIOR_POSITIVE,
        sr.PRIOR_NEGATIVE,
    )
    assert call("ENTRY_BYTES") == len(encode_feedback([FeedbackEntry(1, 0, 0)]))
    assert bytes(call("EVALUATOR_ROLE")) == sr.EVALUATOR_ROLE
    assert (registry.min_bond(), registry.max_delta()) == (10**15, sr.DEFAULT_MAX_DELTA)
    assert (registry.epoch_length(), registry.max_evidence()) == (
        sr.DEFAULT_EPOCH_LENGTH,
        sr.DEFAULT_MAX_EVIDENCE,
    )
    assert call("BURN_ADDRESS") == "0x000000000000000000000000000000000000dEaD"


def test_lifecycle_through_the_facade(registry, dev_accounts, chain_client):
    evaluator, operator = dev_accounts[1], dev_accounts[4]
    assert registry.is_evaluator(evaluator.address) and not registry.is_evaluator(operator.address)
    assert registry.reliabilities() == {}
    sid = registry.register(operator, "http://127.0.0.1:1", ROOT, 10**15)
    info = registry.source(sid)
    assert (info.operator, info.bond, info.status, info.commitment) == (
        operator.address, 10**15, SourceStatus.ACTIVE, ROOT,
    )  # fmt: skip
    fresh = registry.reliability(sid)
    assert (fresh.alpha, fresh.beta, fresh.observations) == (sr.PRIOR_POSITIVE, sr.PRIOR_NEGATIVE, 0)
    assert fresh.mean == pytest.approx(0.2)
    block = chain_client.block_number()
    batch = registry.apply_feedback(evaluator, 1, [FeedbackEntry(sid, 4000, 1000)])
    assert (batch.batch, batch.epoch, batch.entries, batch.evaluator) == (
        1, registry.current_epoch(), (FeedbackEntry(sid, 4000, 1000),), evaluator.address,
    )  # fmt: skip
    assert batch.gas_used > 0
    rel = registry.reliabilities()[sid]
    assert (rel.alpha, rel.beta, rel.observations, rel.mean) == (5000, 5000, 5.0, 0.5)
    assert (rel.budget_positive, rel.budget_negative) == (
        sr.DEFAULT_MAX_DELTA - 4000,
        sr.DEFAULT_MAX_DELTA - 1000,
    )
    assert rel.std < fresh.std
    assert [b.batch for b in registry.feedback_batches()] == [1]
    registry.update_endpoint(operator, sid, "http://127.0.0.1:2")
    registry.update_commitment(operator, sid, b"\x43" * 32)
    assert registry.sources()[0].endpoint == "http://127.0.0.1:2"
    assert registry.reliability(sid).observations == 0  # a new corpus: confidence reset, mean kept
    assert registry.changes_since(block + 1) == ["FeedbackApplied", "EndpointUpdated", "CommitmentUpdated"]
    assert registry.changes_since(chain_client.block_number() + 1) == []
    available = registry.request_exit(operator, sid)
    # Mine a block at the exit time, so the gas estimate (run against the latest block) sees it too.
    chain_client.w3.provider.make_request("evm_mine", [available])
    assert registry.withdraw_bond(operator, sid) == 10**15
    assert registry.source(sid).status is SourceStatus.WITHDRAWN


def test_reverts_are_named(registry, dev_accounts):
    evaluator, operator = dev_accounts[1], dev_accounts[4]
    with pytest.raises(revert_class("SourceRegistry", "BondTooSmall")):
        registry.register(operator, "http://x", ROOT, 1)
    sid = registry.register(operator, "http://x", ROOT, 10**15)
    registry.apply_feedback(evaluator, 1, [FeedbackEntry(sid, 1, 0)])
    with pytest.raises(revert_class("SourceRegistry", "WrongBatch")) as replay:
        registry.apply_feedback(evaluator, 1, [FeedbackEntry(sid, 1, 0)])
    assert replay.value.error_args == {"expected": 2, "given": 1}
    with pytest.raises(revert_class("SourceRegistry", "EpochBudgetExceeded")):
        registry.apply_feedback(evaluator, 2, [FeedbackEntry(sid, sr.DEFAULT_MAX_DELTA, 0)])
    with pytest.raises(revert_class("SourceRegistry", "CommitmentTaken")):
        registry.register(dev_accounts[5], "http://y", ROOT)
    with pytest.raises(revert_class("SourceRegistry", "AccessControlUnauthorizedAccount")):
        registry.apply_feedback(operator, 2, [FeedbackEntry(sid, 1, 0)])
    with pytest.raises(revert_class("SourceRegistry", "UnknownSource")):
        registry.reliability(sid + 1)
    with pytest.raises(revert_class("SourceRegistry", "NotOperator")):
        registry.request_exit(evaluator, sid)


def test_canaries_and_slashing_through_the_facade(registry, dev_accounts, chain_client):
    evaluator, operator = dev_accounts[1], dev_accounts[4]
    sid = registry.register(operator, "http://x", ROOT)
    assert registry.required_bond(operator.address) == 2 * 10**15
    epoch = registry.current_epoch() + 1
    salt, canaries = b"\x07" * 32, b'{"question": "q", "answers": ["a"]}\n'
    commitment = registry.commit_canaries(evaluator, epoch, salt, 1, canaries)
    # The Python commitment is the contract's.
    assert commitment == bytes(
        registry._call("canaryCommitment", evaluator.address, epoch, salt, 1, canaries)
    )
    assert registry.canaries(evaluator.address, epoch) == sr.CanarySet(epoch, evaluator.address, commitment, 1,
                                                                       False)  # fmt: skip
    with pytest.raises(revert_class("SourceRegistry", "EpochNotOver")):
        registry.reveal_canaries(evaluator, epoch, salt, canaries)
    after = registry._call("genesis") + (epoch + 1) * sr.DEFAULT_EPOCH_LENGTH
    chain_client.w3.provider.make_request("evm_mine", [after])
    registry.reveal_canaries(evaluator, epoch, salt, canaries)
    assert registry.revealed_canaries() == [(epoch, evaluator.address, salt, canaries)]
    burned = registry.slash(evaluator, sid, epoch, 1, b"\x0e" * 32)
    assert burned == 10**15 * sr.DEFAULT_SLASH_BPS // 10_000
    (slash,) = registry.slashes()
    assert (slash.source_id, slash.epoch, slash.amount, slash.failures) == (sid, epoch, burned, 1)
    assert registry.source(sid).bond == 10**15 - burned and registry.source(sid).status is SourceStatus.ACTIVE
    with pytest.raises(revert_class("SourceRegistry", "AlreadySlashed")):
        registry.slash(evaluator, sid, epoch, 1, b"\x0e" * 32)
