"""Property: whatever sequence of calls happens, TrainingMarket never pays out more than it holds, and once every
participant has claimed a project's escrow holds nothing but the liveness split's rounding (at most one wei per
trainer; none at all in a completed project).

Hypothesis draws a project configuration and a program of calls (registrations, commitments, reveals,
finalizations with arbitrary scores and flags, time jumps, cancels, challenges and rulings, claims); calls that
revert are part of the program too (they must leave the books unchanged). After every call the contract's balance
must equal the deposits minus everything paid or burned (read from the Claimed and Burned events), and equal the
escrow it books. At the end, everything is wound down by rule and every claimant claims exactly its `claimable`.

The calls go through web3 (the same anvil and deployment as Ape's fixtures) because Ape's per-transaction
tracing would make a few hundred calls per run far too slow.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from market_helpers import (
    ARBITRATION_PERIOD,
    BOND,
    CHALLENGE_WINDOW,
    DURATION,
    MIN_STAKE,
    REVEAL_WINDOW,
    cid,
    params,
    sha,
    validation_sha,
    validation_tree,
)
from web3.exceptions import ContractCustomError, ContractLogicError, ContractPanicError
from web3.logs import DISCARD

from backend.chain.market_rules import update_commitment

N_TRAINERS = 4
ACTIVE, COMPLETED, OPEN = 1, 2, 1
MASKS = st.integers(0, 2**N_TRAINERS - 1)  # which trainers take part
SCORES = st.lists(
    st.one_of(st.just(0), st.integers(1, 10), st.integers(0, 2**64 - 1)),
    min_size=N_TRAINERS,
    max_size=N_TRAINERS,
)
# Calls that may come at any point; most of them revert at most points, which is part of the property.
EXTRA = st.one_of(
    st.tuples(st.just("register"), MASKS, st.integers(0, 3)),
    st.tuples(st.just("commit"), MASKS),
    st.tuples(
        st.just("close"),
    ),
    st.tuples(st.just("reveal"), MASKS),
    st.tuples(st.just("finalize"), SCORES, MASKS),
    st.tuples(
        st.just("warp"),
        st.sampled_from([1, CHALLENGE_WINDOW + 1, DURATION + 1, REVEAL_WINDOW + 1, 2 * DURATION]),
    ),
    st.tuples(st.just("cancel")),
    st.tuples(st.just("challenge"), st.integers(0, 1), st.integers(0, 1)),
    st.tuples(st.just("resolve"), st.booleans()),
    st.tuples(st.just("expire")),
    st.tuples(st.just("claim"), st.integers(0, 9)),
)
# How a finalized round is disputed: not at all, or challenged and then rejected, upheld or left to lapse.
DISPUTES = st.sampled_from(
    [
        (),
        (("challenge", 0, 0), ("resolve", False)),
        (("challenge", 0, 1), ("resolve", True)),
        (("challenge", 0, 0), ("expire",)),
    ]
)
# A round as it usually goes (some trainers commit, the commits close, some of them reveal, the aggregator
# finalizes, perhaps a dispute), then whatever else happens.
ROUND = st.tuples(MASKS, MASKS, SCORES, MASKS, DISPUTES, st.lists(EXTRA, max_size=3))
PROGRAMS = st.tuples(MASKS, st.integers(0, 3), st.lists(ROUND, max_size=4), st.lists(EXTRA, max_size=4))
CONFIGS = st.fixed_dictionaries(
    {
        "rounds": st.integers(1, 3),
        "pool": st.integers(1, 10**20),
        "slashAfterFlags": st.integers(0, 2),
        "slashBps": st.integers(0, 10_000),
    }
)


class Books:
    """Drives one project through web3 and keeps the independent ledger the contract is checked against."""

    def __init__(self, w3, contract, accounts: list[str], config: dict[str, Any]):
        self.w3, self.contract, self.accounts = w3, contract, accounts
        self.owner, self.aggregator, self.arbiter = accounts[0], accounts[1], accounts[2]
        self.trainers = accounts[3 : 3 + N_TRAINERS]
        self.challengers = accounts[8:10]
        self.deposited = 0
        self.paid_out = 0
        pool = config.pop("pool")
        overrides = {**config, "maxTrainers": N_TRAINERS}
        struct = params(self.aggregator, self.arbiter, **overrides)
        self.send(self.owner, "createProject", struct, value=pool)
        self.pid = contract.functions.projectCount().call()

    def send(self, sender: str, fn: str, *args: Any, value: int = 0) -> int | None:
        """Transact; a revert is allowed (it must change nothing). Returns the wei claimed by the call, or None
        if it reverted."""
        try:
            tx = getattr(self.contract.functions, fn)(*args).transact({"from": sender, "value": value})
        except (ContractCustomError, ContractLogicError, ContractPanicError) as exc:
            # A panic (overflow, underflow, division by zero) is a bug even where a revert is fine.
            assert not isinstance(exc, ContractPanicError), f"{fn}{args} panicked: {exc}"
            return None
        event(f"{fn} went through")  # hypothesis statistics: which paths the programs reach
        receipt = self.w3.eth.wait_for_transaction_receipt(tx)
        assert receipt.status == 1
        self.deposited += value
        claimed = sum(
            event.args.amount
            for event in self.contract.events.Claimed().process_receipt(receipt, errors=DISCARD)
        )
        burned = sum(
            event.args.amount
            for event in self.contract.events.Burned().process_receipt(receipt, errors=DISCARD)
        )
        self.paid_out += claimed + burned
        return claimed

    def view(self, fn: str, *args: Any) -> Any:
        return getattr(self.contract.functions, fn)(*args).call()

    def project(self) -> Any:
        return self.view("getProject", self.pid)

    def check(self) -> None:
        balance = self.w3.eth.get_balance(self.contract.address)
        escrow = self.project().escrow
        assert self.paid_out <= self.deposited
        assert balance == self.deposited - self.paid_out == escrow

    def warp(self, seconds: int) -> None:
        self.w3.provider.make_request("evm_increaseTime", [seconds])
        self.w3.provider.make_request("evm_mine", [])

    def salt(self, trainer: str, round_: int) -> bytes:
        return sha(f"salt-{trainer}-{round_}")

    def commit(self, mask: int) -> None:
        round_ = self.project().currentRound
        chain_id = self.w3.eth.chain_id
        for i, trainer in enumerate(self.trainers):
            if mask >> i & 1:
                seal = update_commitment(
                    chain_id, self.contract.address, self.pid, round_, trainer, sha(f"{round_}-{i}").hex(),
                    self.salt(trainer, round_),
                )  # fmt: skip
                self.send(trainer, "commitUpdate", self.pid, round_, seal)

    def close(self) -> None:
        """Move past the open round's commit window and reveal its validation shard."""
        project = self.project()
        round_ = project.currentRound
        now = self.w3.eth.get_block("latest").timestamp
        commit_end = project.roundOpenedAt + project.roundDuration
        if now <= commit_end:
            self.warp(commit_end + 1 - now)
        proof = validation_tree(project.rounds).proof(min(round_, project.rounds - 1))
        self.send(
            self.accounts[9],
            "revealValidation",
            self.pid,
            round_,
            cid(f"v{round_}"),
            validation_sha(round_),
            proof,
        )

    def reveal(self, mask: int) -> None:
        round_ = self.project().currentRound
        for i, trainer in enumerate(self.trainers):
            if mask >> i & 1:
                update = sha(f"{round_}-{i}")
                self.send(
                    trainer,
                    "revealUpdate",
                    self.pid,
                    round_,
                    cid(f"{round_}-{i}"),
                    update,
                    self.salt(trainer, round_),
                )

    def finalize(self, scores: list[int], flag_mask: int) -> None:
        """Post a well-formed result for the open round (waiting out the reveal window if a committer did not
        reveal)."""
        round_ = self.project().currentRound
        submitters = sorted(
            (t for t in self.trainers if self.view("getSubmission", self.pid, round_, t).revealed),
            key=lambda address: int(address, 16),
        )
        flagged = [t for i, t in enumerate(submitters) if flag_mask >> i & 1]
        result = (
            cid(f"m{round_}"),
            sha(f"m{round_}"),
            submitters,
            [0 if t in flagged else scores[i] for i, t in enumerate(submitters)],
            flagged,
            cid(f"r{round_}"),
            sha(f"r{round_}"),
        )
        if self.send(self.aggregator, "finalizeRound", self.pid, round_, result) is None:
            self.warp(DURATION + REVEAL_WINDOW + 1)
            self.send(self.aggregator, "finalizeRound", self.pid, round_, result)

    def claims_open(self) -> bool:
        """The contract's claim rule (backend.chain.market_rules.claims_open) on the project's record."""
        p = self.project()
        now = self.w3.eth.get_block("latest").timestamp
        if p.status not in (2, 3) or p.openChallenges:
            return False
        return p.lastFinalizedAt == 0 or now > p.lastFinalizedAt + p.challengeWindow

    def challenged_rounds(self) -> list[int]:
        return [
            r for r in range(self.project().rounds) if self.view("getRound", self.pid, r).challenge == OPEN
        ]

    def run(self, op: tuple) -> None:
        kind, *args = op
        if kind == "register":
            for i, trainer in enumerate(self.trainers):
                if args[0] >> i & 1:
                    self.send(trainer, "register", self.pid, value=MIN_STAKE * (1 + args[1] + i))
        elif kind == "commit":
            self.commit(args[0])
        elif kind == "close":
            self.close()
        elif kind == "reveal":
            self.reveal(args[0])
        elif kind == "finalize":
            self.finalize(*args)
        elif kind == "warp":
            self.warp(args[0])
        elif kind == "cancel":
            self.send(self.accounts[9], "cancel", self.pid)
        elif kind == "challenge":
            round_ = self.project().currentRound - 1 - args[0]  # the last finalized round, or the one before
            self.send(self.challengers[args[1]], "challenge", self.pid, max(round_, 0), value=BOND)
        elif kind == "resolve":
            for round_ in self.challenged_rounds()[:1]:
                self.send(self.arbiter, "resolveChallenge", self.pid, round_, args[0])
        elif kind == "expire":
            for round_ in self.challenged_rounds()[:1]:
                self.warp(ARBITRATION_PERIOD + 1)
                self.send(self.accounts[9], "expireChallenge", self.pid, round_)
        elif kind == "claim":
            self.send(self.accounts[args[0]], "claim", self.pid)

    def wind_down(self) -> None:
        """Let every clock run out, close what is open by rule, and have everyone claim what they are owed."""
        self.warp(ARBITRATION_PERIOD + 4 * (DURATION + REVEAL_WINDOW))
        for round_ in range(self.project().rounds):
            if self.view("getRound", self.pid, round_).challenge == OPEN:
                assert self.send(self.accounts[9], "expireChallenge", self.pid, round_) is not None
        if self.project().status == ACTIVE:
            assert self.send(self.accounts[9], "cancel", self.pid) is not None
        assert self.claims_open()
        for account in self.accounts:
            owed = self.view("claimable", self.pid, account)
            claimed = self.send(account, "claim", self.pid)
            assert claimed == owed or (claimed is None and owed == 0)
            self.check()
        left = self.w3.eth.get_balance(self.contract.address)
        assert left == self.deposited - self.paid_out
        # Only the liveness split rounds down, at most one wei per trainer; a completed project drains.
        assert left == 0 if self.project().status == COMPLETED else left <= N_TRAINERS


@pytest.mark.slow
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(config=CONFIGS, program=PROGRAMS)
def test_never_pays_out_more_than_it_holds(market, chain, accounts, config, program):
    w3 = chain.provider.web3
    abi = market.contract_type.model_dump(mode="json", by_alias=True)["abi"]
    contract = w3.eth.contract(address=market.address, abi=abi, decode_tuples=True)
    snapshot = chain.snapshot()
    try:
        books = Books(w3, contract, [a.address for a in accounts][:10], dict(config))
        books.check()
        registered, stake, rounds, extras = program
        books.run(("register", registered, stake))
        books.check()
        for committers, revealers, scores, flag_mask, dispute, round_extras in rounds:
            steps = [
                ("commit", committers),
                ("close",),
                ("reveal", revealers),
                ("finalize", scores, flag_mask),
            ]
            for op in [*steps, *dispute, *round_extras]:
                books.run(op)
                books.check()
        for op in extras:
            books.run(op)
            books.check()
        books.wind_down()
    finally:
        chain.restore(snapshot)
