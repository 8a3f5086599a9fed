"""The TrainingMarket facade (web3) against anvil: a full sealed project, reads, named reverts and failure
modes."""

from __future__ import annotations

import hashlib

import pytest
from eth_abi import encode
from eth_utils import keccak

from backend.chain.anvil import advance_clock, free_port, mine_at
from backend.chain.client import ChainClient
from backend.chain.errors import ChainUnavailable, ContractRevert, NotDeployed, revert_class
from backend.chain.keys import dev_account
from backend.chain.market_rules import validation_leaf
from backend.chain.merkle import MerkleTree
from backend.chain.training_market import (
    ChallengeState,
    Claim,
    MarketInputError,
    ProjectParams,
    ProjectStatus,
    RoundResult,
    TrainingMarket,
)

pytestmark = pytest.mark.chain

POOL = 3 * 10**18 + 1
STAKE = 10**17
BOND = 10**17
DURATION, REVEAL, AGGREGATION, CHALLENGE = 600, 300, 600, 120


def sha(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def cid(label: str) -> str:
    return "bafkrei" + sha(label)[:52]


@pytest.fixture
def market(chain_client):
    return TrainingMarket(chain_client)


@pytest.fixture
def roles(dev_accounts):
    owner, aggregator, arbiter, *trainers = dev_accounts[:6]
    return owner, aggregator, arbiter, trainers


def shards(rounds: int) -> MerkleTree:
    """The validation root's tree over one (made-up) shard sha256 per round."""
    return MerkleTree(tuple(validation_leaf(r, sha(f"shard-{r}")) for r in range(rounds)))


def create(market, roles, rounds: int = 2, **overrides) -> int:
    owner, aggregator, arbiter, _ = roles
    values = {
        "initial_model_cid": cid("model-0"),
        "initial_model_sha256": sha("model-0"),
        "config_cid": cid("config"),
        "config_sha256": "0x" + sha("config"),
        "validation_root": shards(rounds).root.hex(),
        "rounds": rounds,
        "round_duration": DURATION,
        "reveal_window": REVEAL,
        "aggregation_window": AGGREGATION,
        "min_stake": STAKE,
        "max_trainers": 5,
        "aggregator": aggregator.address,
        "arbiter": arbiter.address,
        "challenge_window": CHALLENGE,
        "challenge_bond": BOND,
        **overrides,
    }
    return market.create_project(owner, ProjectParams(**values), POOL)


def result(round_: int, scores: dict[str, int], flagged=()) -> RoundResult:
    trainers = sorted(scores, key=lambda a: int(a, 16))
    return RoundResult(
        model_cid=cid(f"model-{round_ + 1}"),
        model_sha256=sha(f"model-{round_ + 1}"),
        trainers=trainers,
        scores=[scores[t] for t in trainers],
        flagged=sorted(flagged, key=lambda a: int(a, 16)),
        report_cid=cid(f"report-{round_}"),
        report_sha256=sha(f"report-{round_}"),
    )


def warp(client: ChainClient, seconds: int) -> None:
    advance_clock(client, seconds)


def salt(trainer, round_: int) -> bytes:
    return keccak(text=f"salt {round_} {trainer.address}")


def commit(market, pid, round_, trainer, label: str) -> None:
    market.commit_update(
        trainer,
        pid,
        round_,
        market.commitment_of(pid, round_, trainer.address, sha(label), salt(trainer, round_)),
    )


def open_reveals(market, pid, round_) -> None:
    """Close the round's commits and reveal its validation shard (as anyone holding it may)."""
    mine_at(market.client, market.project(pid).commit_end + 1)
    rounds = market.project(pid).rounds
    market.reveal_validation(
        dev_account(19, 31337),
        pid,
        round_,
        cid(f"shard-{round_}"),
        sha(f"shard-{round_}"),
        shards(rounds).proof(round_),
    )


def reveal(market, pid, round_, trainer, label: str) -> None:
    market.reveal_update(trainer, pid, round_, cid(label), sha(label), salt(trainer, round_))


def submit(market, pid, round_, trainers) -> None:
    """Every trainer commits, then (commits closed, shard revealed) reveals its update for the round."""
    for trainer in trainers:
        commit(market, pid, round_, trainer, f"{round_}{trainer.address}")
    open_reveals(market, pid, round_)
    for trainer in trainers:
        reveal(market, pid, round_, trainer, f"{round_}{trainer.address}")


def test_a_project_from_creation_to_the_last_claim(market, chain_client, roles):
    owner, aggregator, _, trainers = roles
    a, b = trainers[:2]
    pid = create(market, roles)
    info = market.project(pid)
    assert (info.status, info.owner, info.pool, info.escrow, info.rounds) == (
        ProjectStatus.ACTIVE,
        owner.address,
        POOL,
        POOL,
        2,
    )
    assert (info.initial_model_sha256, info.config_sha256, info.config_cid) == (
        sha("model-0"),
        sha("config"),
        cid("config"),
    )
    assert market.schedule(pid) == (
        info.round_opened_at + DURATION,
        info.round_opened_at + DURATION + REVEAL,
        info.round_opened_at + DURATION + REVEAL + AGGREGATION,
    )
    for trainer in (a, b):
        market.register(trainer, pid, STAKE)
    assert market.trainer(pid, a.address).registered and market.project(pid).trainer_count == 2

    commit(market, pid, 0, b, "b0")
    commit(market, pid, 0, a, "a0")
    # Only commitments so far: nothing names an update.
    assert set(market.commitments(pid, 0)) == {a.address, b.address} and market.submissions(pid, 0) == []
    open_reveals(market, pid, 0)
    assert market.validation_shard(pid, 0).sha256 == market.round(pid, 0).validation_sha256 == sha("shard-0")
    market.reveal_update(b, pid, 0, cid("b0"), "0x" + sha("b0").upper(), salt(b, 0))
    reveal(market, pid, 0, a, "a0")
    subs = market.submissions(pid, 0)
    assert [(s.trainer, s.cid, s.sha256) for s in subs] == [
        (b.address, cid("b0"), sha("b0")),
        (a.address, cid("a0"), sha("a0")),
    ]
    assert subs[0].block < subs[1].block and market.submission_entry(pid, 0, a.address).revealed
    assert market.submissions(pid, 1) == [] and market.submissions(pid + 1, 0) == []

    r0 = result(0, {a.address: 3 * 10**17, b.address: 7 * 10**17})
    digest = market.result_digest_of(pid, 0, r0)
    allocation = keccak(encode(["address[]", "uint64[]", "address[]"], [r0.trainers, r0.scores, r0.flagged]))
    expected = keccak(
        encode(
            ["uint256", "address", "uint256", "uint16", "bytes32", "bytes32", "bytes32"],
            [
                31337,
                market.address,
                pid,
                0,
                bytes.fromhex(sha("model-1")),
                allocation,
                bytes.fromhex(sha("report-0")),
            ],
        )
    ).hex()
    assert digest == expected
    market.finalize_round(aggregator, pid, 0, r0)
    posted = market.round(pid, 0)
    assert (posted.result_digest, market.result_digest(pid, 0)) == (digest, digest)
    assert (posted.model_cid, posted.model_sha256, posted.report_sha256) == (
        cid("model-1"),
        sha("model-1"),
        sha("report-0"),
    )
    assert (posted.submitters, posted.challenge) == (2, ChallengeState.NONE) and posted.finalized_at > 0
    assert not market.is_round_final(pid, 0)

    submit(market, pid, 1, [a, b])
    market.finalize_round(aggregator, pid, 1, result(1, {a.address: 1, b.address: 1}))
    assert market.project(pid).status is ProjectStatus.COMPLETED and not market.claims_open(pid)
    warp(chain_client, CHALLENGE + 1)
    assert market.claims_open(pid) and market.is_round_final(pid, 1)
    rewards = {t.address: market.trainer(pid, t.address).reward for t in (a, b)}
    assert rewards[a.address] == (POOL // 2) * 3 // 10 + (POOL - POOL // 2) // 2
    for account in (a, b, owner):
        owed = market.claimable(pid, account.address)
        claim = market.claim(account, pid)
        assert isinstance(claim, Claim) and claim.amount == owed and claim.slashed == 0
        assert claim.transaction.startswith("0x")
    assert chain_client.balance(market.address) == 0 and market.project(pid).escrow == 0


def test_reverts_come_back_named(market, roles, dev_accounts):
    owner, aggregator, _, trainers = roles
    pid = create(market, roles)
    with pytest.raises(revert_class("TrainingMarket", "UnknownProject")) as info:
        market.project(pid + 1)
    assert info.value.error_args == {"projectId": pid + 1}
    with pytest.raises(revert_class("TrainingMarket", "NotRegistered")):
        commit(market, pid, 0, trainers[0], "x")
    market.register(trainers[0], pid, STAKE)
    with pytest.raises(revert_class("TrainingMarket", "StakeTooLow")):
        market.register(trainers[1], pid, STAKE - 1)
    with pytest.raises(revert_class("TrainingMarket", "WrongRound")) as info:
        commit(market, pid, 1, trainers[0], "x")
    assert info.value.error_args["openRound"] == 0
    commit(market, pid, 0, trainers[0], "x")
    with pytest.raises(revert_class("TrainingMarket", "AlreadyCommitted")):
        commit(market, pid, 0, trainers[0], "y")
    with pytest.raises(revert_class("TrainingMarket", "NotRevealWindow")):
        reveal(market, pid, 0, trainers[0], "x")
    open_reveals(market, pid, 0)
    with pytest.raises(revert_class("TrainingMarket", "CommitmentMismatch")):
        reveal(market, pid, 0, trainers[0], "y")
    reveal(market, pid, 0, trainers[0], "x")
    r0 = result(0, {trainers[0].address: 1})
    with pytest.raises(revert_class("TrainingMarket", "NotAggregator")):
        market.finalize_round(owner, pid, 0, r0)
    with pytest.raises(revert_class("TrainingMarket", "NotSubmitter")):
        market.finalize_round(aggregator, pid, 0, result(0, {trainers[1].address: 1}))
    with pytest.raises(revert_class("TrainingMarket", "ClaimsNotOpen")):
        market.claim(trainers[0], pid)
    with pytest.raises(revert_class("TrainingMarket", "DeadlineNotPassed")):
        market.cancel(dev_accounts[9], pid)
    market.finalize_round(aggregator, pid, 0, r0)
    with pytest.raises(revert_class("TrainingMarket", "WrongBond")) as info:
        market.challenge(dev_accounts[9], pid, 0, BOND - 1)
    assert isinstance(info.value, ContractRevert) and info.value.error_args == {
        "sent": BOND - 1,
        "required": BOND,
    }
    with pytest.raises(revert_class("TrainingMarket", "NotArbiter")):
        market.resolve_challenge(owner, pid, 0, True)


def test_bad_hashes_are_refused_before_anything_is_sent(market, chain_client, roles):
    _, _, _, trainers = roles
    pid = create(market, roles)
    market.register(trainers[0], pid, STAKE)
    nonce = chain_client.w3.eth.get_transaction_count(trainers[0].address)
    for bad in ("xyz", sha("x")[:-2], sha("x") + "00", "g" * 64, None):
        with pytest.raises(MarketInputError, match="64 hex digits"):
            market.reveal_update(trainers[0], pid, 0, cid("x"), bad, salt(trainers[0], 0))
    assert chain_client.w3.eth.get_transaction_count(trainers[0].address) == nonce
    with pytest.raises(ValueError):  # MarketInputError is also a ValueError, for callers that catch those
        market.create_project(roles[0], ProjectParams(**{**_params(roles), "config_sha256": "00"}), POOL)


def _params(roles) -> dict:
    _, aggregator, arbiter, _ = roles
    return {
        "initial_model_cid": cid("m"),
        "initial_model_sha256": sha("m"),
        "config_cid": cid("c"),
        "config_sha256": sha("c"),
        "validation_root": shards(1).root.hex(),
        "rounds": 1,
        "round_duration": DURATION,
        "reveal_window": REVEAL,
        "aggregation_window": AGGREGATION,
        "min_stake": STAKE,
        "max_trainers": 5,
        "aggregator": aggregator.address,
        "arbiter": arbiter.address,
        "challenge_window": CHALLENGE,
        "challenge_bond": BOND,
    }


def test_cancel_challenge_and_lapse_through_the_facade(market, chain_client, roles, dev_accounts):
    owner, aggregator, arbiter, trainers = roles
    a, b = trainers[:2]
    challenger = dev_accounts[9]
    pid = create(market, roles, rounds=3)
    for trainer in (a, b):
        market.register(trainer, pid, STAKE)
    submit(market, pid, 0, [a, b])
    market.finalize_round(aggregator, pid, 0, result(0, {a.address: 1, b.address: 0}, flagged=[b.address]))
    market.challenge(challenger, pid, 0, BOND)  # within round 0's window; round 1 goes on meanwhile
    submit(market, pid, 1, [a, b])
    market.finalize_round(aggregator, pid, 1, result(1, {a.address: 1, b.address: 1}))
    market.challenge(challenger, pid, 1, BOND)
    assert market.round(pid, 0).challenge is ChallengeState.OPEN and market.project(pid).open_challenges == 2
    market.resolve_challenge(arbiter, pid, 0, True)
    assert market.reversed_rounds(pid) == [0] and market.project(pid).status is ProjectStatus.CANCELLED
    with pytest.raises(revert_class("TrainingMarket", "ArbitrationPending")):
        market.expire_challenge(challenger, pid, 1)
    warp(chain_client, 7 * 24 * 3600 + 1)
    market.expire_challenge(challenger, pid, 1)
    assert market.round(pid, 1).challenge is ChallengeState.LAPSED and market.is_round_final(pid, 1)
    # The upheld challenge's bond back in full; half of the lapsed one's (silence costs the challenger, F-6).
    assert market.claimable(pid, challenger.address) == BOND + BOND // 2
    for account in (a, b, challenger, owner):
        market.claim(account, pid)
    assert chain_client.balance(market.address) == 0


def test_cancel_after_the_aggregator_deadline(market, chain_client, roles, dev_accounts):
    pid = create(market, roles)
    market.register(roles[3][0], pid, STAKE)
    submit(market, pid, 0, roles[3][:1])
    mine_at(chain_client, market.project(pid).aggregation_deadline + 1)
    market.cancel(dev_accounts[9], pid)
    assert market.project(pid).status is ProjectStatus.CANCELLED and market.claims_open(pid)
    assert market.claimable(pid, roles[3][0].address) == POOL + STAKE  # the only worker takes the whole pool


def test_a_node_that_is_down_or_a_wrong_address(chain_client, compiled_artifacts, dev_accounts):
    down = ChainClient(f"http://127.0.0.1:{free_port()}", compiled_artifacts, chain_client.deployments)
    with pytest.raises(ChainUnavailable):
        TrainingMarket(down)
    with pytest.raises(NotDeployed):
        TrainingMarket(chain_client, dev_accounts[7].address)
