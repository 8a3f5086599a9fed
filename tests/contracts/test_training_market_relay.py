"""Relayed calls: a trainer signs an ERC-2771 request (OpenZeppelin's ForwardRequest, EIP-712) for a commitment,
a reveal or a claim, and anyone relays it through TrustmarketForwarder; the market acts for the signer. Replays,
front-runs and invalidated requests cost the relayer a no-op, never a failed transaction."""

from __future__ import annotations

import ape
import pytest
from eth_account import Account
from market_helpers import (
    CHALLENGE_WINDOW,
    MIN_STAKE,
    ROUNDS,
    cid,
    close_commits,
    commitment,
    create,
    register_all,
    result,
    reveal_validation,
    reverts,
    salt,
    sha,
    warp_to,
)

from backend.chain.forwarder import EIP712_DOMAIN, FORWARD_REQUEST_TYPE
from backend.eip712 import Eip712Domain, typed_data

GAS = 300_000


@pytest.fixture
def forwarder(project, owner):
    return owner.deploy(project.TrustmarketForwarder, EIP712_DOMAIN[0])


@pytest.fixture
def relayed_market(project, owner, forwarder):
    """A market that trusts the forwarder (no committee)."""
    return owner.deploy(project.TrainingMarket, "0x" + "00" * 20, forwarder.address)


@pytest.fixture
def rpid(relayed_market, owner, aggregator, arbiter, trainers) -> int:
    pid = create(relayed_market, owner, aggregator, arbiter)
    register_all(relayed_market, pid, trainers[:3])
    return pid


def request(forwarder, signer, to: str, data: bytes, deadline: int, nonce: int | None = None) -> tuple:
    """`signer`'s signed ForwardRequestData for `data` at `to` (its current nonce unless given)."""
    nonce = forwarder.nonces(signer.address) if nonce is None else nonce
    message = {
        "from": signer.address,
        "to": to,
        "value": 0,
        "gas": GAS,
        "nonce": nonce,
        "deadline": deadline,
        "data": data,
    }
    domain = Eip712Domain(*EIP712_DOMAIN, ape.chain.chain_id, forwarder.address)
    signed = Account.sign_typed_data(
        signer.private_key, full_message=typed_data(domain, FORWARD_REQUEST_TYPE, message)
    )
    return (signer.address, to, 0, GAS, deadline, data, bytes(signed.signature))


def commit_data(market, pid: int, round_: int, trainer, label: str) -> bytes:
    seal = commitment(market, pid, round_, trainer, sha(label), salt(trainer, round_))
    return bytes(market.commitUpdate.encode_input(pid, round_, seal))


def future(chain, seconds: int = 600) -> int:
    return chain.pending_timestamp + seconds


def test_the_domain_is_the_forwarders(forwarder):
    # The request type itself is checked by every relayed call below: a signature over another type never verifies.
    domain = forwarder.eip712Domain()
    assert (domain.name, domain.version, domain.verifyingContract) == (
        EIP712_DOMAIN[0],
        "1",
        forwarder.address,
    )


def test_a_relayed_commitment_and_reveal_land_as_the_trainers(
    relayed_market, forwarder, rpid, trainers, outsider, chain
):
    trainer = trainers[0]
    req = request(
        forwarder,
        trainer,
        relayed_market.address,
        commit_data(relayed_market, rpid, 0, trainer, "u"),
        future(chain),
    )
    assert forwarder.verify(req)
    before = trainer.balance
    tx = forwarder.execute(req, sender=outsider)
    (event,) = tx.events.filter(relayed_market.UpdateCommitted)
    assert event.trainer == trainer.address  # the signer, never the relayer
    assert trainer.balance == before  # the relayer paid the gas
    assert forwarder.nonces(trainer.address) == 1
    close_commits(chain, relayed_market, rpid)
    reveal = relayed_market.revealUpdate.encode_input(rpid, 0, cid("u"), sha("u"), salt(trainer, 0))
    req = request(forwarder, trainer, relayed_market.address, bytes(reveal), future(chain))
    tx = forwarder.execute(req, sender=outsider)
    (revealed,) = tx.events.filter(relayed_market.UpdateRevealed)
    assert (revealed.trainer, revealed.cid) == (trainer.address, cid("u"))
    assert relayed_market.getSubmission(rpid, 0, trainer).revealed


def test_a_replayed_or_front_run_request_is_skipped_not_reverted(
    relayed_market, forwarder, rpid, trainers, outsider, accounts, chain
):
    trainer, front_runner = trainers[0], accounts[18]
    req = request(
        forwarder,
        trainer,
        relayed_market.address,
        commit_data(relayed_market, rpid, 0, trainer, "u"),
        future(chain),
    )
    forwarder.executeBatch([req], front_runner.address, sender=front_runner)  # sent first, by someone else
    assert relayed_market.getProject(rpid).roundCommits == 1
    # The relayer's copy of the same request: skipped (its nonce is used), the transaction still succeeds.
    tx = forwarder.executeBatch([req], outsider.address, sender=outsider)
    assert not tx.events.filter(forwarder.ExecutedForwardRequest)
    assert relayed_market.getProject(rpid).roundCommits == 1
    # A plain `execute` of a replay reverts: relayers use executeBatch with a refund receiver.
    with ape.reverts():
        forwarder.execute(req, sender=outsider)


def test_a_trainer_voids_a_request_it_signed(relayed_market, forwarder, rpid, trainers, outsider, chain):
    trainer = trainers[0]
    req = request(
        forwarder,
        trainer,
        relayed_market.address,
        commit_data(relayed_market, rpid, 0, trainer, "u"),
        future(chain),
    )
    tx = forwarder.invalidateNonce(sender=trainer)
    assert tx.events.filter(forwarder.NonceInvalidated)[0].nonce == 0
    assert not forwarder.verify(req)
    forwarder.executeBatch([req], outsider.address, sender=outsider)
    assert relayed_market.getProject(rpid).roundCommits == 0  # nothing ran


def test_forged_expired_and_foreign_requests_do_not_run(
    relayed_market, forwarder, rpid, trainers, outsider, owner, chain, project
):
    trainer, other = trainers[:2]
    data = commit_data(relayed_market, rpid, 0, trainer, "u")
    forged = request(forwarder, other, relayed_market.address, data, future(chain))
    forged = (trainer.address, *forged[1:])  # signed by `other`, claims to be `trainer`
    assert not forwarder.verify(forged)
    # Expired before the latest block: `verify` is a call at the latest block, which may be seconds older
    # than the pending one on a loaded machine.
    expired = request(forwarder, trainer, relayed_market.address, data, chain.blocks.head.timestamp - 1)
    assert not forwarder.verify(expired)
    untrusting = owner.deploy(project.TrainingMarket, "0x" + "00" * 20, "0x" + "00" * 20)
    foreign = request(forwarder, trainer, untrusting.address, data, future(chain))
    assert not forwarder.verify(foreign)
    forwarder.executeBatch([forged, expired, foreign], outsider.address, sender=outsider)
    assert relayed_market.getProject(rpid).roundCommits == 0


def test_a_forwarded_call_the_market_refuses_runs_nothing(
    relayed_market, forwarder, rpid, outsider, accounts, chain
):
    stranger = accounts[17]  # not registered
    data = commit_data(relayed_market, rpid, 0, stranger, "u")
    req = request(forwarder, stranger, relayed_market.address, data, future(chain))
    tx = forwarder.executeBatch([req], outsider.address, sender=outsider)
    (executed,) = tx.events.filter(forwarder.ExecutedForwardRequest)
    assert not executed.success and relayed_market.getProject(rpid).roundCommits == 0


def test_a_relayed_claim_pays_the_signer(
    relayed_market, forwarder, rpid, trainers, aggregator, outsider, chain
):
    a, b, c = trainers[:3]
    for round_ in range(ROUNDS):
        for t in (a, b, c):
            seal = commitment(relayed_market, rpid, round_, t, sha(f"{round_}{t.address}"), salt(t, round_))
            relayed_market.commitUpdate(rpid, round_, seal, sender=t)
        close_commits(chain, relayed_market, rpid)
        for t in (a, b, c):
            relayed_market.revealUpdate(
                rpid, round_, cid("x"), sha(f"{round_}{t.address}"), salt(t, round_), sender=t
            )
        reveal_validation(relayed_market, rpid, round_, outsider)
        relayed_market.finalizeRound(rpid, round_, result(round_, [a, b, c], [1, 1, 1]), sender=aggregator)
    warp_to(chain, relayed_market.getProject(rpid).lastFinalizedAt + CHALLENGE_WINDOW + 1)
    chain.mine()
    owed = relayed_market.claimable(rpid, a)
    assert owed > MIN_STAKE
    before = a.balance
    claim = bytes(relayed_market.claim.encode_input(rpid))
    forwarder.execute(request(forwarder, a, relayed_market.address, claim, future(chain)), sender=outsider)
    assert a.balance == before + owed  # paid to the signer, not to the relayer or the forwarder
    assert relayed_market.getTrainer(rpid, a).claimed
    with reverts(relayed_market.AlreadyClaimed, account=a.address):
        relayed_market.claim(rpid, sender=a)
