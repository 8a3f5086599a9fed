"""A real training marketplace for the round runner and verifier tests: the session's anvil with the deployed
TrainingMarket (rolled back after each test by `chain_client`), a `LocalStore` in `tmp_path`, dev accounts as
owner, aggregator, arbiter and trainers, and digits updates trained for one epoch.

Rounds are sealed: `submit_bytes` only commits (what it will reveal is kept in the `Marketplace`), and
`close(project)` moves the clock past the commit window, reveals the round's validation shard and every pending
update, as the owner and the trainers would.

`tests/aggregator/conftest.py` is another engineer's file, so each test module declares its own `marketplace`
fixture with `open_marketplace`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import torch
from eth_account.signers.local import LocalAccount
from safetensors.torch import save as st_save

from aggregator.data import DigitsData, load_digits_data, non_iid_splits
from backend.chain.anvil import advance_clock, mine_at
from backend.chain.client import ChainClient
from backend.chain.training_market import ProjectStatus, RoundResult, TrainingMarket
from backend.marketplace.manifest import ContentRef
from backend.marketplace.publish import PublishedProject, publish_project, put_ref
from backend.marketplace.runner import FinalizedRound, RoundRunner
from backend.marketplace.trainer import GlobalModel, current_model, encode_update, train_update
from backend.marketplace.validation import reveal_shard
from backend.storage import ContentStore, LocalStore, compute_cid, sha256_hex
from backend.storage.codec import META_TRAINER, encode_state, state_metadata

__all__ = [
    "ETH",
    "MODEL",
    "Marketplace",
    "Project",
    "advance_time",
    "assert_nothing_posted",
    "bad_submission",
    "digits",
    "open_marketplace",
    "raw_safetensors",
    "round_result",
    "shards",
]

ETH = 10**18
MODEL = "digits_mlp"
# Few permutations keep a round under a second; the valuation stays deterministic all the same.
FAST_CONTRIBUTION = {"max_permutations": 20}
# Training is deterministic given the base model, learning rate and seed: train once per session.
_TRAINED: dict[tuple[str, float, int], dict[str, torch.Tensor]] = {}


@cache
def digits() -> DigitsData:
    return load_digits_data(0)


@cache
def shards(n: int = 7) -> tuple[Any, ...]:
    return tuple(non_iid_splits(digits().train, n, 1.0, 0))


def raw_safetensors(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """safetensors bytes written directly, without `encode_state`'s checks (which refuse NaN/Inf)."""
    return st_save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata)


def advance_time(client: ChainClient, seconds: int) -> None:
    """Mine a block `seconds` after the latest one."""
    advance_clock(client, seconds)


@dataclass(frozen=True)
class Project:
    id: int
    published: PublishedProject
    trainers: tuple[LocalAccount, ...]


@dataclass
class Marketplace:
    """The deployed market, a fresh store and the accounts of one test."""

    client: ChainClient
    market: TrainingMarket
    store: ContentStore
    owner: LocalAccount
    aggregator: LocalAccount
    arbiter: LocalAccount
    outsider: LocalAccount
    accounts: list[LocalAccount]
    # Commitments not yet revealed, by (project, round): trainer -> (account, reference, salt).
    pending: dict[tuple[int, int], dict[str, tuple[LocalAccount, ContentRef, bytes]]] = field(
        default_factory=dict
    )

    def create(
        self,
        *,
        rule: str = "fedavg",
        rule_params: dict[str, Any] | None = None,
        n_trainers: int = 5,
        rounds: int = 1,
        round_duration: int = 3600,
        reveal_window: int = 600,
        aggregation_window: int = 3600,
        contribution: dict[str, Any] | None = None,
        seed: int = 0,
        challenge_window: int = 0,
        challenge_bond: int = 0,
    ) -> Project:
        """Publish a digits_mlp project, escrow 1 ETH and register `n_trainers` trainers (accounts 5, 6, ...)."""
        published = publish_project(
            self.store,
            model=MODEL,
            validation=(digits().validation.X, digits().validation.y),
            rounds=rounds,
            rule=rule,
            rule_params=rule_params or {},
            contribution=contribution if contribution is not None else FAST_CONTRIBUTION,
            seed=seed,
            max_trainers=n_trainers,
        )
        trainers = tuple(self.accounts[5 : 5 + n_trainers])
        project_id = self.market.create_project(
            self.owner,
            published.project_params(
                rounds=rounds,
                round_duration=round_duration,
                reveal_window=reveal_window,
                aggregation_window=aggregation_window,
                min_stake=ETH // 100,
                max_trainers=len(trainers),
                aggregator=self.aggregator.address,
                arbiter=self.arbiter.address,
                challenge_window=challenge_window,
                challenge_bond=challenge_bond,
            ),
            ETH,
        )
        for trainer in trainers:
            self.market.register(trainer, project_id, ETH // 100)
        return Project(project_id, published, trainers)

    def model(self, project: Project) -> GlobalModel:
        return current_model(self.market, self.store, project.id)

    def honest_delta(self, project: Project, index: int, model: GlobalModel | None = None) -> dict[str, Any]:
        """Trainer `index`'s delta for the open round: one epoch on its own non-IID shard."""
        model = model or self.model(project)
        key = (model.ref.sha256, model.client_lr, index)
        if key not in _TRAINED:
            shard = shards()[index % len(shards())]
            overrides = {"epochs": 1, "batch_size": 32, "seed": index}
            _TRAINED[key] = train_update(model, (shard.X, shard.y), overrides=overrides)
        return {name: t.clone() for name, t in _TRAINED[key].items()}

    def honest_update(self, project: Project, index: int, model: GlobalModel | None = None) -> bytes:
        model = model or self.model(project)
        return encode_update(model, self.honest_delta(project, index, model), project.trainers[index].address)

    def submit_bytes(
        self,
        project: Project,
        trainer: LocalAccount,
        data: bytes,
        *,
        round_: int | None = None,
        sha256: str | None = None,
        cid: str | None = None,
    ) -> ContentRef:
        """Commit to `data` with no client-side checks (what a dishonest or broken trainer can do); `close` stores
        it and reveals its CID. `sha256`/`cid` override what is committed and revealed."""
        ref = put_ref(self.store, data) if cid is None else ContentRef(cid=cid, sha256=sha256_hex(data))
        return self.commit_ref(project, trainer, ContentRef(cid=ref.cid, sha256=sha256 or ref.sha256), round_)

    def commit_ref(
        self, project: Project, trainer: LocalAccount, ref: ContentRef, round_: int | None = None
    ) -> ContentRef:
        """Commit to the update `ref` names (whatever is or is not stored under it); `close` reveals it."""
        round_ = self.market.project(project.id).current_round if round_ is None else round_
        salt = secrets.token_bytes(32)
        commitment = self.market.commitment_of(project.id, round_, trainer.address, ref.sha256, salt)
        self.market.commit_update(trainer, project.id, round_, commitment)
        self.pending.setdefault((project.id, round_), {})[trainer.address] = (trainer, ref, salt)
        return ref

    def close(self, project: Project, *, reveal: list[LocalAccount] | None = None) -> None:
        """End the open round's commit window (moving the clock), reveal its validation shard, and reveal the
        pending updates (of `reveal` only, if given; the others stay unrevealed)."""
        info = self.market.project(project.id)
        round_ = info.current_round
        mine_at(self.client, info.commit_end + 1)
        if int(self.market.round(project.id, round_).validation_sha256, 16) == 0:
            reveal_shard(
                self.market, self.store, self.owner, project.id, round_, project.published.validation
            )
        pending = self.pending.pop((project.id, round_), {})
        chosen = None if reveal is None else {t.address for t in reveal}
        for address, (trainer, ref, salt) in pending.items():
            if chosen is None or address in chosen:
                self.market.reveal_update(trainer, project.id, round_, ref.cid, ref.sha256, salt)

    def submit_honest(
        self, project: Project, trainers: list[LocalAccount] | None = None, *, close: bool = True
    ) -> None:
        """Every given trainer (default: all) commits to its honest update for the open round; with `close`, the
        commit window is then closed and every pending update revealed (`close`)."""
        model = self.model(project)
        for trainer in trainers if trainers is not None else project.trainers:
            index = project.trainers.index(trainer)
            self.submit_bytes(project, trainer, self.honest_update(project, index, model))
        if close:
            self.close(project)

    def runner(self, account: LocalAccount | None = None) -> RoundRunner:
        """A round runner over this market and store, signing with `account` (default: the aggregator)."""
        return RoundRunner(self.market, self.store, account or self.aggregator)

    def submission(self, project: Project, round_: int, trainer: LocalAccount) -> tuple[bool, bool, int]:
        """(revealed, flagged, share in wei) of one trainer's entry in one round, as the contract stores it."""
        entry = self.market.submission_entry(project.id, round_, trainer.address)
        return entry.revealed, entry.flagged, entry.share

    def posted(self, project: Project, round_: int) -> tuple[dict[str, int], list[str]]:
        """The scores and flagged trainers `finalizeRound` recorded (its `RoundScored` event)."""
        logs = self.client.events(
            "TrainingMarket",
            "RoundScored",
            filters={"projectId": project.id, "round": round_},
            address=self.market.address,
        )
        if len(logs) != 1:
            raise AssertionError(f"expected one RoundScored event, found {len(logs)}")
        args = logs[0]["args"]
        return dict(zip(args["trainers"], (int(s) for s in args["scores"]), strict=True)), list(
            args["flagged"]
        )

    def metadata(
        self,
        project: Project,
        round_: int | None = None,
        base: str | None = None,
        trainer: LocalAccount | None = None,
    ) -> dict[str, str]:
        """The metadata an update for the open round carries, naming `trainer` if given (overridable to forge a
        replay)."""
        model = self.model(project)
        meta = state_metadata(
            project.id, model.round if round_ is None else round_, base or model.ref.cid, kind="delta"
        )
        if trainer is not None:
            meta[META_TRAINER] = trainer.address.lower()
        return meta


def round_result(done: FinalizedRound) -> RoundResult:
    """The `RoundResult` the runner posted for `done` (sorted as the contract wants it)."""
    trainers = sorted(done.outcome.scores_fixed, key=lambda a: int(a, 16))
    return RoundResult(
        model_cid=done.model.cid,
        model_sha256=done.model.sha256,
        trainers=trainers,
        scores=[done.outcome.scores_fixed[t] for t in trainers],
        flagged=sorted(done.outcome.flagged, key=lambda a: int(a, 16)),
        report_cid=done.report.cid,
        report_sha256=done.report.sha256,
    )


def open_marketplace(
    chain_client: ChainClient, dev_accounts: list[LocalAccount], tmp_path: Path
) -> Marketplace:
    """The `marketplace` fixture's value (each test module declares the fixture: conftest.py is not ours).
    Accounts: 0 deployed the contracts, 1 owner, 2 aggregator, 3 arbiter, 4 outsider, 5.. trainers."""
    return Marketplace(
        client=chain_client,
        market=TrainingMarket(chain_client),
        store=LocalStore(tmp_path / "store"),
        owner=dev_accounts[1],
        aggregator=dev_accounts[2],
        arbiter=dev_accounts[3],
        outsider=dev_accounts[4],
        accounts=list(dev_accounts),
    )


def assert_nothing_posted(m: Marketplace, project: Project, pins_before: list[str], round_: int = 0) -> None:
    """The round is still open on chain, and neither a model nor a report went into the store."""
    info = m.market.project(project.id)
    assert (info.status, info.current_round) == (ProjectStatus.ACTIVE, round_)
    assert m.market.round(project.id, round_).finalized_at == 0
    finalized = m.client.events(
        "TrainingMarket", "RoundFinalized", filters={"projectId": project.id}, address=m.market.address
    )
    assert [int(e["args"]["round"]) for e in finalized] == list(range(round_))
    assert m.store.pins() == pins_before


def _other_bytes() -> bytes:
    return b"bytes nobody stored"


def bad_submission(m: Marketplace, project: Project, trainer: LocalAccount, case: str) -> None:
    """`trainer` submits a bad update for the open round: `case` names what is wrong with it."""
    model = m.model(project)
    delta = m.honest_delta(project, 5, model)
    meta = m.metadata(project, trainer=trainer)
    first = next(iter(delta))
    if case == "wrong_shape":
        delta[first] = delta[first][:-1].contiguous()
        m.submit_bytes(project, trainer, encode_state(delta, meta))
    elif case == "wrong_dtype":
        m.submit_bytes(project, trainer, encode_state({k: v.double() for k, v in delta.items()}, meta))
    elif case == "missing_tensor":
        m.submit_bytes(project, trainer, encode_state({k: v for k, v in delta.items() if k != first}, meta))
    elif case in ("nan", "inf"):
        delta[first].view(-1)[3] = float("nan") if case == "nan" else float("-inf")
        m.submit_bytes(project, trainer, raw_safetensors(delta, meta))
    elif case == "garbage":
        m.submit_bytes(project, trainer, b"\x07\x00\x00\x00\x00\x00\x00\x00{garbage" + bytes(range(256)))
    elif case == "unreachable_cid":
        # A well-formed CID and its true sha256, but the bytes were never put in the store.
        m.commit_ref(
            project, trainer, ContentRef(cid=compute_cid(_other_bytes()), sha256=sha256_hex(_other_bytes()))
        )
    elif case == "invalid_cid":
        m.commit_ref(project, trainer, ContentRef(cid="not-a-cid", sha256=sha256_hex(_other_bytes())))
    elif case == "hash_mismatch":
        m.submit_bytes(project, trainer, encode_state(delta, meta), sha256=sha256_hex(_other_bytes()))
    elif case == "other_round":
        m.submit_bytes(
            project,
            trainer,
            encode_state(delta, m.metadata(project, round_=model.round + 1, trainer=trainer)),
        )
    elif case == "other_project":
        m.submit_bytes(project, trainer, encode_state(delta, {**meta, "project": str(project.id + 1)}))
    elif case == "other_base_model":
        base = project.published.manifest.cid  # any CID other than the round's global model
        m.submit_bytes(project, trainer, encode_state(delta, m.metadata(project, base=base, trainer=trainer)))
    else:  # pragma: no cover - a typo in the parametrization
        raise AssertionError(case)
