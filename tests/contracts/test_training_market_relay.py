"""TrainingMarket.submitUpdateFor: a trainer's EIP-712 signed submission relayed by someone else, and every
revert (replay, wrong signer, expired deadline, a signature over other fields, the checks of submitUpdate)."""

from __future__ import annotations

import ape
from eth_account import Account
from eth_utils import keccak
from market_helpers import (
    DURATION,
    cid,
    create,
    register_all,
    reverts,
    sha,
    warp_to,
)

# Written out here rather than taken from the facade, so that a drift between the two fails a test.
SUBMIT_UPDATE_TYPES = {
    "SubmitUpdate": [
        {"name": "trainer", "type": "address"},
        {"name": "projectId", "type": "uint256"},
        {"name": "round", "type": "uint16"},
        {"name": "cid", "type": "string"},
        {"name": "sha256", "type": "bytes32"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ]
}


def _sign(market, key: bytes, trainer: str, project_id: int, round_: int, cid_: str, digest: bytes, deadline: int,
          nonce: int | None = None) -> bytes:  # fmt: skip
    """`key`'s signature over SubmitUpdate(trainer, ...) with the trainer's current nonce unless given."""
    signed = Account.sign_typed_data(
        key,
        domain_data={
            "name": "trustmarket TrainingMarket",
            "version": "1",
            "chainId": ape.chain.chain_id,
            "verifyingContract": market.address,
        },
        message_types=SUBMIT_UPDATE_TYPES,
        message_data={
            "trainer": trainer,
            "projectId": project_id,
            "round": round_,
            "cid": cid_,
            "sha256": digest,
            "nonce": market.nonces(trainer) if nonce is None else nonce,
            "deadline": deadline,
        },
    )
    return bytes(signed.signature)


def _signed(market, trainer, project_id: int, round_: int, label: str, deadline: int) -> bytes:
    return _sign(
        market, trainer.private_key, trainer.address, project_id, round_, cid(label), sha(label), deadline
    )


def _future(chain, seconds: int = 600) -> int:
    return chain.pending_timestamp + seconds


def test_typehash_matches_the_documented_type(market):
    fields = ",".join(f"{f['type']} {f['name']}" for f in SUBMIT_UPDATE_TYPES["SubmitUpdate"])
    assert market.SUBMIT_UPDATE_TYPEHASH() == keccak(text=f"SubmitUpdate({fields})")
    domain = market.eip712Domain()
    assert (domain.name, domain.version, domain.verifyingContract) == (
        "trustmarket TrainingMarket",
        "1",
        market.address,
    )


def test_relayed_submission_lands_as_the_trainers(market, pid, trainers, outsider, chain):
    trainer = trainers[0]
    register_all(market, pid, [trainer])
    deadline = _future(chain)
    signature = _signed(market, trainer, pid, 0, "relayed", deadline)
    before = trainer.balance
    tx = market.submitUpdateFor(
        trainer.address, pid, 0, cid("relayed"), sha("relayed"), deadline, signature, sender=outsider
    )
    (event,) = tx.events.filter(market.UpdateSubmitted)
    assert (event.projectId, event.round, event.trainer) == (pid, 0, trainer.address)
    assert (event.cid, event.sha256) == (cid("relayed"), sha("relayed"))
    assert market.getSubmission(pid, 0, trainer.address).submitted is True
    assert market.getSubmission(pid, 0, outsider.address).submitted is False
    assert market.getTrainer(pid, trainer.address).submissions == 1
    assert market.getProject(pid).roundSubmissions == 1
    assert market.nonces(trainer.address) == 1
    assert trainer.balance == before  # the relayer paid the gas


def test_replay_reverts(market, pid, trainers, outsider, chain):
    trainer = trainers[0]
    register_all(market, pid, [trainer])
    deadline = _future(chain)
    args = (
        trainer.address,
        pid,
        0,
        cid("once"),
        sha("once"),
        deadline,
        _signed(market, trainer, pid, 0, "once", deadline),
    )
    market.submitUpdateFor(*args, sender=outsider)
    # The nonce moved on, so the same signature no longer matches the digest.
    with reverts(market.InvalidSignature, trainer=trainer.address):
        market.submitUpdateFor(*args, sender=outsider)
    assert market.nonces(trainer.address) == 1


def test_signature_for_an_already_submitted_round_reverts_and_keeps_the_nonce(
    market, pid, trainers, outsider, chain
):
    trainer = trainers[0]
    register_all(market, pid, [trainer])
    market.submitUpdate(pid, 0, cid("direct"), sha("direct"), sender=trainer)
    deadline = _future(chain)
    signature = _signed(market, trainer, pid, 0, "again", deadline)
    with reverts(market.AlreadySubmitted, projectId=pid, round=0, trainer=trainer.address):
        market.submitUpdateFor(
            trainer.address, pid, 0, cid("again"), sha("again"), deadline, signature, sender=outsider
        )
    # A reverted relay consumes nothing.
    assert market.nonces(trainer.address) == 0


def test_wrong_signer_reverts(market, pid, trainers, outsider, chain):
    trainer, other = trainers[0], trainers[1]
    register_all(market, pid, [trainer, other])
    deadline = _future(chain)
    forged = _sign(market, other.private_key, trainer.address, pid, 0, cid("x"), sha("x"), deadline)
    with reverts(market.InvalidSignature, trainer=trainer.address):
        market.submitUpdateFor(trainer.address, pid, 0, cid("x"), sha("x"), deadline, forged, sender=outsider)
    # The other trainer's own signature does not make it the trainer's either.
    own = _signed(market, other, pid, 0, "x", deadline)
    with reverts(market.InvalidSignature, trainer=trainer.address):
        market.submitUpdateFor(trainer.address, pid, 0, cid("x"), sha("x"), deadline, own, sender=outsider)
    assert market.getSubmission(pid, 0, trainer.address).submitted is False


def test_malformed_signature_reverts(market, pid, trainers, outsider, chain):
    trainer = trainers[0]
    register_all(market, pid, [trainer])
    with reverts(market.InvalidSignature, trainer=trainer.address):
        market.submitUpdateFor(
            trainer.address, pid, 0, cid("x"), sha("x"), _future(chain), b"\x01" * 10, sender=outsider
        )


def test_expired_deadline_reverts(market, pid, trainers, outsider, chain):
    trainer = trainers[0]
    register_all(market, pid, [trainer])
    deadline = _future(chain, 60)
    signature = _signed(market, trainer, pid, 0, "late", deadline)
    warp_to(chain, deadline + 1)
    with reverts(market.SignatureExpired, deadline=deadline, nowTimestamp=deadline + 1):
        market.submitUpdateFor(
            trainer.address, pid, 0, cid("late"), sha("late"), deadline, signature, sender=outsider
        )


def test_deadline_is_inclusive(market, pid, trainers, outsider, chain):
    trainer = trainers[0]
    register_all(market, pid, [trainer])
    deadline = _future(chain, 60)
    signature = _signed(market, trainer, pid, 0, "edge", deadline)
    warp_to(chain, deadline)
    market.submitUpdateFor(
        trainer.address, pid, 0, cid("edge"), sha("edge"), deadline, signature, sender=outsider
    )
    assert market.getSubmission(pid, 0, trainer.address).submitted is True


def test_signature_over_other_fields_reverts(
    market, owner, aggregator, arbiter, pid, trainers, outsider, chain
):
    trainer = trainers[0]
    other_pid = create(market, owner, aggregator, arbiter)
    register_all(market, pid, [trainer])
    register_all(market, other_pid, [trainer])
    deadline = _future(chain)
    key, who = trainer.private_key, trainer.address
    cases = {
        "project": _sign(market, key, who, other_pid, 0, cid("a"), sha("a"), deadline),
        "round": _sign(market, key, who, pid, 1, cid("a"), sha("a"), deadline),
        "cid": _sign(market, key, who, pid, 0, cid("b"), sha("a"), deadline),
        "sha256": _sign(market, key, who, pid, 0, cid("a"), sha("b"), deadline),
        "deadline": _sign(market, key, who, pid, 0, cid("a"), sha("a"), deadline + 1),
        "nonce": _sign(market, key, who, pid, 0, cid("a"), sha("a"), deadline, nonce=1),
    }
    for field, signature in cases.items():
        with reverts(market.InvalidSignature, trainer=who):
            market.submitUpdateFor(who, pid, 0, cid("a"), sha("a"), deadline, signature, sender=outsider)
        assert not market.getSubmission(pid, 0, who).submitted, field


def test_another_markets_signature_reverts(project, market, owner, pid, trainers, outsider, chain):
    trainer = trainers[0]
    register_all(market, pid, [trainer])
    elsewhere = owner.deploy(project.TrainingMarket, "0x" + "00" * 20)
    deadline = _future(chain)
    signature = _signed(elsewhere, trainer, pid, 0, "a", deadline)
    with reverts(market.InvalidSignature, trainer=trainer.address):
        market.submitUpdateFor(
            trainer.address, pid, 0, cid("a"), sha("a"), deadline, signature, sender=outsider
        )


def test_unregistered_trainer_reverts_as_in_submit_update(market, pid, trainers, outsider, chain):
    trainer = trainers[0]
    deadline = _future(chain)
    signature = _signed(market, trainer, pid, 0, "a", deadline)
    with reverts(market.NotRegistered, projectId=pid, trainer=trainer.address):
        market.submitUpdateFor(
            trainer.address, pid, 0, cid("a"), sha("a"), deadline, signature, sender=outsider
        )


def test_submit_update_checks_apply_to_relayed_ones(market, pid, trainers, outsider, chain):
    trainer = trainers[0]
    register_all(market, pid, [trainer])
    far = _future(chain, 10 * DURATION)
    wrong_round = _signed(market, trainer, pid, 1, "a", far)
    with reverts(market.WrongRound, projectId=pid, round=1, openRound=0):
        market.submitUpdateFor(trainer.address, pid, 1, cid("a"), sha("a"), far, wrong_round, sender=outsider)
    bad_cid = _sign(market, trainer.private_key, trainer.address, pid, 0, "", sha("a"), far)
    with reverts(market.InvalidContentReference):
        market.submitUpdateFor(trainer.address, pid, 0, "", sha("a"), far, bad_cid, sender=outsider)
    unknown = _signed(market, trainer, 99, 0, "a", far)
    with reverts(market.UnknownProject, projectId=99):
        market.submitUpdateFor(trainer.address, 99, 0, cid("a"), sha("a"), far, unknown, sender=outsider)
    late = _signed(market, trainer, pid, 0, "a", far)
    opened = market.getProject(pid).roundOpenedAt
    warp_to(chain, opened + DURATION + 1)
    with reverts(market.SubmissionWindowClosed, projectId=pid, round=0, closedAt=opened + DURATION):
        market.submitUpdateFor(trainer.address, pid, 0, cid("a"), sha("a"), far, late, sender=outsider)
    assert market.nonces(trainer.address) == 0
