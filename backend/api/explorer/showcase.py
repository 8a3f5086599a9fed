"""A chain worth exploring: the demo's rounds on a full deployment, plus what the demo alone never shows.

`build_showcase` deploys every contract (a verifier committee wired into the market), seats three verifiers,
runs `make demo`'s marketplace on that market (the committee recomputes and attests every round but the last,
which becomes final when its challenge window ends), then leaves a second project running (one round finalized
inside a long challenge window, the next one open and half submitted). Before the projects (its epochs move
anvil's clock on by hours) it registers data sources on the SourceRegistry whose corpora are slices of the
shipped SQuAD paragraphs (real Merkle commitments) and lives through what a registry sees: feedback batches, one
epoch apart; a reliable source whose evidence passes `maxEvidence` (old evidence forgotten); a source that
commits to a new corpus (its confidence reset) and is later slashed on revealed canaries; a contradicted source
that leaves, withdraws its bond and comes back under a new id with the same corpus (inheriting its record).
Everything is real transactions on the node at `chain_url`: the explorer's tests and `trustmarket demo
--explore` read it as they would any chain.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.chain.artifacts import Artifacts
from backend.chain.client import ChainClient
from backend.chain.deploy import deploy_contracts
from backend.chain.deployments import Deployments
from backend.chain.keys import dev_account
from backend.chain.source_registry import FeedbackEntry, SourceRegistry
from backend.chain.training_market import TrainingMarket
from backend.chain.verifier_committee import VerifierCommittee
from backend.committee import bls
from backend.committee.attestation import join
from backend.committee.exchange import SignatureExchange
from backend.committee.service import CommitteeService
from backend.marketplace.demo import DemoConfig, run_demo
from backend.marketplace.recompute import VerifyReport, verify_round
from backend.settings import Settings
from backend.storage import ContentStore, LocalStore

__all__ = ["SOURCE_FEEDBACK", "Showcase", "build_showcase", "serve_showcase"]

ETH = 10**18
NETWORK = "ethereum:local:foundry"
OWNER, AGGREGATOR, ARBITER = 1, 2, 3
VERIFIERS = (14, 15, 16)
SOURCE_OPERATORS = (17, 18, 19)
# Evidence per batch in observations (positive, negative) for sources 1..3: a reliable source, a mixed one and
# one that keeps being contradicted. The contract takes SCALE (1,000) units per observation. Source 1's last
# three batches (10 each, the per-epoch maximum) take it past the 40 observations a record keeps.
SOURCE_FEEDBACK: tuple[dict[int, tuple[float, float]], ...] = (
    {1: (3, 0), 2: (2, 1), 3: (1, 2)},
    {1: (4, 0), 2: (1, 1), 3: (0, 3)},
    {1: (2, 1), 2: (2, 2), 3: (0, 4)},
    {1: (5, 0), 3: (1, 3)},
    {1: (10, 0), 2: (1, 1)},
    {1: (10, 0), 2: (2, 0)},
    {1: (9, 1)},
)
# The canary set the evaluator commits to and reveals (JSON lines: question, answers, reference passage).
SHOWCASE_CANARIES = (
    b'{"question": "Which NFL team represented the AFC at Super Bowl 50?", "answers": ["Denver Broncos"], '
    b'"passage": "squad-0"}\n'
)


@dataclass
class Showcase:
    """Where the showcase lives and what it holds (the demo's report included)."""

    chain_url: str
    deployments: Deployments
    store_path: Path
    demo_project: int
    running_project: int
    attested_rounds: list[int]
    source_ids: list[int]
    demo_report: dict[str, Any] = field(default_factory=dict)

    def settings(self, home: Path) -> Settings:
        """Settings that point every part at this chain and store, with state under `home`."""
        deployments_dir = home / "deployments"
        self.deployments.save(deployments_dir / "local.json")
        return Settings(
            home=home,
            chain_url=self.chain_url,
            deployments_dir=deployments_dir,
            store_path=self.store_path,
            network=NETWORK,
        )


def _key(i: int) -> bls.KeyPair:
    return bls.derive_keypair(hashlib.sha256(f"trustmarket showcase verifier {i}".encode()).digest())


def _committee_services(
    market: TrainingMarket, committee: VerifierCommittee, store: ContentStore, exchange_dir: Path
) -> list[CommitteeService]:
    verified: dict[tuple[int, int, str], VerifyReport] = {}

    def verify_once(m: TrainingMarket, s: ContentStore, project_id: int, round_: int) -> VerifyReport:
        # Three members would recompute the same round three times; one recomputation serves them all here.
        key = (project_id, round_, m.result_digest(project_id, round_))
        if key not in verified:
            verified[key] = verify_round(m, s, project_id, round_)
        return verified[key]

    exchange = SignatureExchange(exchange_dir)
    services = []
    for i in VERIFIERS:
        account = dev_account(i, market.client.chain_id)
        services.append(
            CommitteeService(market, committee, store, _key(i), account, exchange, verify=verify_once)
        )
    return services


def build_showcase(
    out_dir: Path, *, chain_url: str, settings: Settings | None = None, rounds: int = 3
) -> Showcase:
    """Fill the (fresh) node at `chain_url`; the content store goes to `out_dir/store`."""
    settings = settings or Settings()
    out_dir.mkdir(parents=True, exist_ok=True)
    client = ChainClient(chain_url, Artifacts.load(settings.artifacts_path))
    deployer = dev_account(0, client.chain_id)
    # A week-long SourceRegistry epoch: the sealed rounds played after the sources' batches move the clock by
    # hours, and the pages should still show the budget the epoch's last batch left.
    deployments = deploy_contracts(
        client, deployer, network=NETWORK, overrides={"SourceRegistry": {"epochLength": 7 * 24 * 3600}}
    )
    client.deployments = deployments
    market = TrainingMarket(client)
    committee = VerifierCommittee(client)
    for i in VERIFIERS:  # seated before the first round, so every round's snapshot holds all three
        committee.admit(deployer, dev_account(i, client.chain_id).address)  # the deployer admits each member
        join(committee, dev_account(i, client.chain_id), _key(i), committee.min_stake())

    sources = _sources(SourceRegistry(client), deployer)
    store = LocalStore(out_dir / "store")
    services = _committee_services(market, committee, store, out_dir / "exchange")
    attested: list[int] = []

    def attest(row: dict[str, Any]) -> None:
        if row["round"] == rounds - 1:
            return  # the last round is left to its challenge window
        for service in services:
            outcomes = service.run_once()
            attested.extend(o.round for o in outcomes if o.action == "attested" and o.round not in attested)

    report = run_demo(
        out_dir,
        DemoConfig(rounds=rounds),
        settings=settings,
        chain_url=chain_url,
        deployments=deployments,
        on_round=attest,
    )
    running = _running_project(market, store)
    return Showcase(
        chain_url=chain_url,
        deployments=deployments,
        store_path=out_dir / "store",
        demo_project=int(report["project"]),
        running_project=running,
        attested_rounds=sorted(attested),
        source_ids=sources,
        demo_report=report,
    )


def _running_project(market: TrainingMarket, store: ContentStore) -> int:
    """Four honest trainers and a free rider: round 0 finalized (its challenge window open for the hour, less the
    ten minutes round 1's commits took), round 1 open with two of five trainers committed, their commit window
    over and both updates revealed."""
    import tempfile

    import torch

    from aggregator.data import load_digits_data, non_iid_splits
    from aggregator.simulation import role_updates
    from backend.marketplace.local import play_sealed_round
    from backend.marketplace.publish import publish_project
    from backend.marketplace.runner import RoundRunner
    from backend.marketplace.trainer import current_model, encode_update

    chain_id = market.client.chain_id
    owner, aggregator = dev_account(OWNER, chain_id), dev_account(AGGREGATOR, chain_id)
    trainers = [dev_account(i, chain_id) for i in range(4, 9)]  # the demo's first five trainers, again
    roles: dict[str, str] = {str(t.address): "honest" for t in trainers[:4]} | {
        str(trainers[4].address): "free_rider"
    }
    data = load_digits_data(1)
    shards: dict[str, Any] = dict(
        zip(sorted(roles), non_iid_splits(data.train, len(roles), 1.0, 1), strict=True)
    )
    published = publish_project(
        store,
        model="digits_mlp",
        validation=(data.validation.X, data.validation.y),
        rounds=3,
        rule="trimmed_mean",
        rule_params={"beta": 0.2},
        seed=1,
    )
    project_id = market.create_project(
        owner,
        published.project_params(
            rounds=3,
            round_duration=600,
            reveal_window=3600,
            aggregation_window=3600,
            min_stake=ETH // 10,
            max_trainers=8,
            aggregator=aggregator.address,
            arbiter=dev_account(ARBITER, chain_id).address,
            challenge_window=3600,
            challenge_bond=ETH // 10,
            slash_after_flags=2,
            slash_bps=2_500,
        ),
        value=3 * ETH,
    )
    for trainer in trainers:
        market.register(trainer, project_id, ETH // 5)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory(prefix="showcase-homes-") as folder:
            homes = {t.address: Path(folder) / t.address for t in trainers}
            owner_home = Path(folder) / "owner"
            published.validation.save(owner_home)
            for round_, submitting in ((0, trainers), (1, trainers[:2])):
                model = current_model(market, store, project_id)
                train = {"epochs": 3, "lr": model.client_lr, "batch_size": 16}
                deltas = role_updates(
                    roles, shards, "digits_mlp", model.state, train, round_seed=7_000 + round_
                )
                updates = {t: encode_update(model, deltas[t.address], t.address) for t in submitting}
                play_sealed_round(
                    market, store, model, updates, homes=homes, owner=owner, owner_home=owner_home
                )
                if round_ == 0:
                    RoundRunner(market, store, aggregator).finalize(project_id, 0)
    finally:
        torch.set_num_threads(threads)
    return project_id


def _sources(registry: SourceRegistry, evaluator) -> list[int]:
    """Sources 1..3 with `SOURCE_FEEDBACK`, source 2's new corpus and slash, source 3's exit and return as 4."""
    from rag.corpus import load_corpus

    corpus = load_corpus()
    chain_id = registry.client.chain_id
    operators = [dev_account(i, chain_id) for i in SOURCE_OPERATORS]
    third = len(corpus.documents) // 3
    parts = [corpus.with_documents(corpus.documents[k * third : (k + 1) * third]) for k in range(3)]
    ids = [
        registry.register(
            operator, f"http://127.0.0.1:{9101 + k}", part.commitment, registry.min_bond() * (k + 1)
        )
        for k, (operator, part) in enumerate(zip(operators, parts, strict=True))
    ]

    def next_epoch() -> None:  # the registry bounds each source's movement per epoch: move anvil's clock on
        start = registry.genesis() + (registry.current_epoch() + 1) * registry.epoch_length()
        registry.client.w3.provider.make_request("evm_mine", [start])  # type: ignore[arg-type]

    scale, salt, canary_epoch = 1000, hashlib.sha256(b"trustmarket showcase canaries").digest(), 0
    for number, batch in enumerate(SOURCE_FEEDBACK):
        entries = [
            FeedbackEntry(ids[source - 1], int(pos * scale), int(neg * scale))
            for source, (pos, neg) in sorted(batch.items())
        ]
        registry.apply_feedback(evaluator, registry.batches() + 1, entries)
        if number == 1:  # source 3 starts leaving; feedback still reaches it while it does
            registry.request_exit(operators[2], ids[2])
        if (
            number == 3
        ):  # source 2 serves a new corpus (one paragraph fewer): its confidence falls to the prior's
            registry.update_commitment(
                operators[1], ids[1], parts[1].with_documents(parts[1].documents[1:]).commitment
            )
        if number == 4:  # canaries for the next epoch, committed before it starts
            canary_epoch = registry.current_epoch() + 1
            registry.commit_canaries(evaluator, canary_epoch, salt, 1, SHOWCASE_CANARIES)
        next_epoch()
    # The canaries' epoch is over: reveal them and slash source 2, shown to serve a tampered reference passage.
    registry.reveal_canaries(evaluator, canary_epoch, salt, SHOWCASE_CANARIES)
    evidence = hashlib.sha256(b"source 2's signed answer to the canary, passage altered").digest()
    registry.slash(evaluator, ids[1], canary_epoch, 1, evidence)
    # Source 3's exit delay has passed: its bond comes back, and it registers again with the same corpus.
    registry.withdraw_bond(operators[2], ids[2])
    ids.append(registry.register(operators[2], "http://127.0.0.1:9104", parts[2].commitment))
    # A batch in the epoch still running: the pages show what it left of each record's budget.
    registry.apply_feedback(evaluator, registry.batches() + 1,
                            [FeedbackEntry(ids[0], 2 * scale, 0), FeedbackEntry(ids[3], 0, scale)])  # fmt: skip
    return ids


def serve_showcase(
    out_dir: Path, *, rounds: int = 3, port: int = 8000, say: Callable[[str], None] = print
) -> None:
    """`trustmarket demo --explore`: a fresh anvil, the showcase on it, and the API with the explorer on
    127.0.0.1:`port` until interrupted; the chain stops with it."""
    import uvicorn

    from backend.api import ApiSettings, create_app
    from backend.chain.anvil import start_anvil

    node = start_anvil(attach=False)
    try:
        say(
            f"building the showcase on {node.url} (the demo's {rounds} rounds, a running project, sources)..."
        )
        showcase = build_showcase(out_dir, chain_url=node.url, rounds=rounds)
        settings = showcase.settings(out_dir / "home")
        app = create_app(settings, ApiSettings())
        say(
            f"explorer on http://127.0.0.1:{port}/ (chain {node.url}, store {showcase.store_path}); Ctrl-C stops"
        )
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
    finally:
        node.stop()
