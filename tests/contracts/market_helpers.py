"""Helpers for the TrainingMarket tests: default parameters and functions that drive a sealed round (commit,
reveal, validation shard).

Imported by the test_training_market*.py modules (pytest puts this folder on sys.path); the fixtures (roles, a
market, a project) live in conftest.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from typing import Any

import ape
from eth_abi import decode, encode
from eth_utils import keccak
from hexbytes import HexBytes
from web3.exceptions import ContractCustomError

from backend.chain.market_rules import update_commitment, validation_leaf
from backend.chain.merkle import MerkleTree

ETHER = 10**18
POOL = 9 * ETHER + 7  # not a multiple of the round count: exercises the remainder rule
MIN_STAKE = ETHER // 10
BOND = ETHER // 2
ROUNDS = 3
DURATION = 1_000  # the commit window
REVEAL_WINDOW = 400
AGGREGATION_WINDOW = 500
CHALLENGE_WINDOW = 300
ARBITRATION_PERIOD = 7 * 24 * 3600
SCORE_ONE = 10**18
BURN = "0x000000000000000000000000000000000000dEaD"
NO_COMMITTEE = "0x0000000000000000000000000000000000000000"
NO_FORWARDER = NO_COMMITTEE

# Status and ChallengeState as the contract numbers them.
ACTIVE, COMPLETED, CANCELLED = 1, 2, 3
OPEN, REJECTED, UPHELD, LAPSED = 1, 2, 3, 4


def sha(label: str | int) -> bytes:
    return hashlib.sha256(str(label).encode()).digest()


def cid(label: str | int) -> str:
    return f"bafkrei{str(label).rjust(52, 'a')}"


def address_of(account: Any) -> str:
    return getattr(account, "address", account)


def validation_sha(round_: int) -> bytes:
    """The sha256 of round `round_`'s (pretend) validation shard."""
    return sha(f"validation-{round_}")


def validation_tree(rounds: int) -> MerkleTree:
    return MerkleTree(tuple(validation_leaf(r, validation_sha(r).hex()) for r in range(rounds)))


def salt(trainer: Any, round_: int, label: str = "") -> bytes:
    """A deterministic salt per trainer, round and label (a real trainer draws a random one)."""
    return keccak(text=f"salt-{address_of(trainer)}-{round_}-{label}")


def commitment(market, project_id: int, round_: int, trainer: Any, digest: bytes, salt_: bytes) -> bytes:
    return update_commitment(
        ape.chain.chain_id, market.address, project_id, round_, address_of(trainer), digest.hex(), salt_
    )


def params(aggregator, arbiter, /, **overrides: Any) -> dict[str, Any]:
    """ProjectParams as a dict (Ape encodes dicts into the struct by field name)."""
    values: dict[str, Any] = {
        "initialModelCid": cid("model-0"),
        "initialModelSha256": sha("model-0"),
        "configCid": cid("config"),
        "configSha256": sha("config"),
        "rounds": ROUNDS,
        "roundDuration": DURATION,
        "revealWindow": REVEAL_WINDOW,
        "aggregationWindow": AGGREGATION_WINDOW,
        "minStake": MIN_STAKE,
        "maxTrainers": 8,
        "aggregator": address_of(aggregator),
        "arbiter": address_of(arbiter),
        "challengeWindow": CHALLENGE_WINDOW,
        "challengeBond": BOND,
        "slashAfterFlags": 2,
        "slashBps": 5_000,
    }
    values.update(overrides)
    values.setdefault("validationRoot", validation_tree(max(values["rounds"], 1)).root)
    return values


def result(
    round_: int,
    trainers: Sequence[Any],
    scores: Sequence[int],
    flagged: Iterable[Any] = (),
    *,
    sort: bool = True,
) -> dict[str, Any]:
    """A RoundResult; by default trainers (with their scores) and flagged are sorted as the contract requires.
    `sort=False` passes the lists exactly as given (to test the contract's checks)."""
    addresses = [address_of(t) for t in trainers]
    scores = list(scores)
    flagged_addresses = [address_of(t) for t in flagged]
    if sort:
        order = sorted(range(len(addresses)), key=lambda i: int(addresses[i], 16))
        addresses = [addresses[i] for i in order]
        scores = [scores[i] for i in order]
        flagged_addresses.sort(key=lambda a: int(a, 16))
    return {
        "modelCid": cid(f"model-{round_ + 1}"),
        "modelSha256": sha(f"model-{round_ + 1}"),
        "trainers": addresses,
        "scores": scores,
        "flagged": flagged_addresses,
        "reportCid": cid(f"report-{round_}"),
        "reportSha256": sha(f"report-{round_}"),
    }


def expected_digest(chain_id: int, market: str, project_id: int, round_: int, r: dict[str, Any]) -> bytes:
    """The result digest, computed independently of the contract."""
    allocation = keccak(
        encode(["address[]", "uint64[]", "address[]"], [r["trainers"], r["scores"], r["flagged"]])
    )
    return keccak(
        encode(
            ["uint256", "address", "uint256", "uint16", "bytes32", "bytes32", "bytes32"],
            [chain_id, market, project_id, round_, r["modelSha256"], allocation, r["reportSha256"]],
        )
    )


@contextmanager
def reverts(error, **inputs: Any):
    """`ape.reverts` that also fails when the revert is some *other* error (Ape skips the type check when the
    revert did not decode to a custom error, e.g. a panic)."""
    with ape.reverts(error, **inputs) as info:
        yield info
    assert type(info.value).__name__ == error.__name__, f"expected {error.__name__}, got {info.value!r}"


def view_reverts(chain, contract, error, fn: str, *args: Any, **inputs: Any) -> None:
    """A view call reverts with `error` (and these inputs). Ape does not decode custom errors of eth_call, so
    the revert data is fetched through web3 and decoded here."""
    data = getattr(contract, fn).encode_input(*args)
    try:
        chain.provider.web3.eth.call({"to": contract.address, "data": data})
    except ContractCustomError as exc:
        raw = HexBytes(exc.data)
    else:
        raise AssertionError(f"{fn}{args} did not revert")
    abi = error.abi
    assert raw[:4] == keccak(text=abi.selector)[:4], f"expected {abi.selector}, got {raw[:4].hex()}"
    values = decode([arg.canonical_type for arg in abi.inputs], raw[4:])
    actual = {arg.name: value for arg, value in zip(abi.inputs, values, strict=True)}
    for name, expected in inputs.items():
        value = actual[name]
        if isinstance(value, str) and value.startswith("0x"):
            value, expected = value.lower(), address_of(expected).lower()
        assert value == expected, f"{abi.name}.{name}: expected {expected!r}, got {value!r}"


def warp_to(chain, timestamp: int) -> None:
    """Make the next block carry exactly `timestamp`."""
    chain.pending_timestamp = timestamp


def warp_by(chain, seconds: int) -> None:
    chain.pending_timestamp = chain.blocks.head.timestamp + seconds


def create(market, owner, aggregator, arbiter, /, pool: int = POOL, **overrides: Any) -> int:
    market.createProject(params(aggregator, arbiter, **overrides), sender=owner, value=pool)
    return market.projectCount()


def register_all(market, project_id: int, trainers: Iterable[Any], stake: int = MIN_STAKE) -> None:
    for trainer in trainers:
        market.register(project_id, sender=trainer, value=stake)


def update_label(round_: int, trainer: Any) -> str:
    return f"{round_}-{address_of(trainer)}"


def commit_all(market, project_id: int, round_: int, trainers: Iterable[Any]) -> None:
    """Every trainer commits to its update for the round (label `update_label(round, trainer)`)."""
    for trainer in trainers:
        label = update_label(round_, trainer)
        seal = commitment(market, project_id, round_, trainer, sha(label), salt(trainer, round_))
        market.commitUpdate(project_id, round_, seal, sender=trainer)


def reveal_all(market, project_id: int, round_: int, trainers: Iterable[Any]) -> None:
    """Every trainer reveals what `commit_all` committed to (the commit window must be over)."""
    for trainer in trainers:
        label = update_label(round_, trainer)
        market.revealUpdate(project_id, round_, cid(label), sha(label), salt(trainer, round_), sender=trainer)


def schedule(market, project_id: int) -> tuple[int, int, int]:
    """The open round's (commit end, reveal end, aggregator deadline), from the project's record."""
    p = market.getProject(project_id)
    commit_end = p.roundOpenedAt + p.roundDuration
    return commit_end, commit_end + p.revealWindow, commit_end + p.revealWindow + p.aggregationWindow


# The contract's claim and finality rules, read off its records as backend.chain.market_rules computes them (the
# contract keeps no view for them: they cost deployed bytes; the claim tests check them against `claim` itself).


def claims_open(market, project_id: int) -> bool:
    p = market.getProject(project_id)
    now = ape.chain.blocks.head.timestamp
    if p.status not in (COMPLETED, CANCELLED) or p.openChallenges:
        return False
    return p.lastFinalizedAt == 0 or now > p.lastFinalizedAt + p.challengeWindow


def is_round_final(market, project_id: int, round_: int) -> bool:
    rd = market.getRound(project_id, round_)
    if rd.finalizedAt == 0 or rd.challenge in (OPEN, UPHELD):
        return False
    return ape.chain.blocks.head.timestamp > rd.finalizedAt + market.getProject(project_id).challengeWindow


def reversed_rounds(market, project_id: int) -> list[int]:
    """The rounds an upheld challenge reversed, from the RoundReversed events."""
    w3 = ape.chain.provider.web3
    abi = market.contract_type.model_dump(mode="json", by_alias=True)["abi"]
    events = w3.eth.contract(address=market.address, abi=abi).events.RoundReversed
    return [
        log.args.round for log in events().get_logs(from_block=0, argument_filters={"projectId": project_id})
    ]


def close_commits(chain, market, project_id: int) -> None:
    """Move the next block to the first second after the open round's commit window."""
    warp_to(chain, schedule(market, project_id)[0] + 1)


def reveal_validation(market, project_id: int, round_: int, sender) -> None:
    """Reveal round `round_`'s validation shard with its proof (the commit window must be over)."""
    proof = validation_tree(market.getProject(project_id).rounds).proof(round_)
    market.revealValidation(
        project_id, round_, cid(f"validation-{round_}"), validation_sha(round_), proof, sender=sender
    )


def submit_all(
    market,
    project_id: int,
    round_: int,
    trainers: Iterable[Any],
    *,
    chain=None,
    rounds: int = ROUNDS,
    revealer=None,
) -> None:
    """A whole sealed round but its finalization: everyone commits, the commit window closes, everyone reveals,
    and the round's validation shard is revealed (by `revealer`, default the first trainer). Finalization is then
    allowed at once (every committer revealed)."""
    trainers = list(trainers)
    commit_all(market, project_id, round_, trainers)
    close_commits(chain or ape.chain, market, project_id)
    reveal_all(market, project_id, round_, trainers)
    revealer = revealer or (trainers[0] if trainers else ape.accounts.test_accounts[19])
    reveal_validation(market, project_id, round_, revealer)


def round_pool(round_: int, pool: int = POOL, rounds: int = ROUNDS) -> int:
    return pool // rounds + (pool % rounds if round_ == rounds - 1 else 0)


def shares(pool: int, scores: Sequence[int]) -> list[int]:
    total = sum(scores)
    return [pool * s // total if total else 0 for s in scores]
