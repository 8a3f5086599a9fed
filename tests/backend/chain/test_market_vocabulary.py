"""The contract's vocabulary in Python, checked against the contract itself: the enums against the Solidity
enums, the result digest and the finalization timing rule against what TrainingMarket computes and enforces, the
EIP-712 types against the contracts' TYPEHASH constants (and the forwarder's, by a request it verifies), and revert
classes that belong to one contract."""

from __future__ import annotations

import ast
import hashlib
import re
from pathlib import Path

import pytest

from backend.chain.access_registry import ACCEPT_TERMS_TYPE, AccessRegistry
from backend.chain.errors import ContractRevert, revert_class
from backend.chain.forwarder import Forwarder
from backend.chain.market_rules import validation_leaf
from backend.chain.merkle import MerkleTree
from backend.chain.source_registry import SourceStatus
from backend.chain.training_market import (
    ChallengeState,
    ProjectParameter,
    ProjectParams,
    ProjectStatus,
    RoundResult,
    TrainingMarket,
    finalize_blocker,
    result_digest,
)
from backend.chain.verifier_committee import VerifierCommittee, VerifierStatus
from backend.eip712 import struct_types, typehash

pytestmark = pytest.mark.chain

ROOT = Path(__file__).resolve().parents[3]
DURATION, REVEAL, AGGREGATION = 600, 200, 300


def _solidity_enum(path: str, name: str) -> list[str]:
    source = (ROOT / "contracts" / path).read_text()
    body = re.search(rf"enum {name} \{{([^}}]*)\}}", source).group(1)
    return [member.strip() for member in body.split(",") if member.strip()]


@pytest.mark.parametrize(
    ("python_enum", "path", "name"),
    [
        (ProjectStatus, "interfaces/ITrainingMarket.sol", "Status"),
        (ChallengeState, "interfaces/ITrainingMarket.sol", "ChallengeState"),
        (ProjectParameter, "interfaces/ITrainingMarket.sol", "Parameter"),
        (VerifierStatus, "interfaces/IVerifierCommittee.sol", "Status"),
        (SourceStatus, "interfaces/ISourceRegistry.sol", "Status"),
    ],
)
def test_enums_mirror_the_solidity_enums(python_enum, path, name):
    labels = [getattr(m, "label", m.name.capitalize()) for m in python_enum]
    assert labels == _solidity_enum(path, name)
    assert [m.value for m in python_enum] == list(range(len(python_enum)))


def test_eip712_types_are_the_contracts_typehashes(chain_client, dev_accounts):
    market, registry = TrainingMarket(chain_client), AccessRegistry(chain_client)
    assert typehash(ACCEPT_TERMS_TYPE) == bytes(registry._call("ACCEPT_TERMS_TYPEHASH"))
    # OpenZeppelin's forwarder keeps its typehash private: a request signed on our ForwardRequest type verifies.
    forwarder = Forwarder(chain_client, market.forwarder_address())
    request = forwarder.sign(dev_accounts[5], market.address, b"\x01\x02", chain_client.timestamp() + 600)
    assert forwarder.verify(request)
    assert not forwarder.verify(type(request)(**{**request.__dict__, "data": b"\x01\x03"}))
    assert struct_types(ACCEPT_TERMS_TYPE)["AcceptTerms"][1] == {"name": "termsHash", "type": "bytes32"}


def _sha(label: object) -> str:
    return hashlib.sha256(str(label).encode()).hexdigest()


def _result(trainers: list[str], scores: list[int], flagged: list[str]) -> RoundResult:
    return RoundResult(
        model_cid="bafkrei" + "m" * 52,
        model_sha256=_sha(("model", trainers)),
        trainers=trainers,
        scores=scores,
        flagged=flagged,
        report_cid="bafkrei" + "r" * 52,
        report_sha256=_sha(("report", scores)),
    )


def test_the_result_digest_is_computed_as_the_contract_computes_it(chain_client, dev_accounts):
    market = TrainingMarket(chain_client)
    people = sorted((a.address for a in dev_accounts[3:9]), key=lambda a: int(a, 16))
    cases = [
        _result([], [], []),
        _result(people[:1], [10**18], []),
        _result(people, [0, 5, 2**64 - 1, 7, 0, 1], [people[0], people[4]]),
        _result(people[1:4], [3, 0, 9], [people[2]]),
    ]
    for round_ in (0, 1, 65_535):
        for project_id in (1, 2**200):
            for case in cases:
                onchain = bytes(
                    market._call(
                        "resultDigestOf", project_id, round_, market._struct_arg("resultDigestOf", case, 2)
                    )
                ).hex()
                assert (
                    result_digest(chain_client.chain_id, market.address, project_id, round_, case) == onchain
                )
    assert market.result_digest_of(1, 0, cases[2]) == result_digest(
        chain_client.chain_id, market.address, 1, 0, cases[2]
    )
    # The digest binds the chain and the market.
    assert result_digest(1, market.address, 1, 0, cases[1]) != market.result_digest_of(1, 0, cases[1])


def _finalize_reverts_for_timing(
    market: TrainingMarket, aggregator, pid: int, result: RoundResult
) -> str | None:
    """The timing error `finalizeRound` raises now (None if it would pass the timing checks)."""
    function = market.client.contract("TrainingMarket").functions.finalizeRound(
        pid, 0, market._struct_arg("finalizeRound", result, index=2)
    )
    try:
        market.client._with_decoded_reverts(
            "TrainingMarket", lambda: function.call({"from": aggregator.address})
        )
    except ContractRevert as exc:
        if exc.error_name in ("RoundStillOpen", "AggregationDeadlinePassed"):
            return exc.error_name
        raise
    return None


def test_the_finalization_timing_rule_is_the_contracts(chain_client, dev_accounts):
    """`finalize_blocker` says "not yet" or "too late" exactly when the contract refuses for timing: commits
    open, reveals open while a committer has not revealed, past the deadline."""
    market = TrainingMarket(chain_client)
    owner, aggregator, arbiter, a, b = dev_accounts[:5]
    tree = MerkleTree((validation_leaf(0, _sha("shard 0")), validation_leaf(1, _sha("shard 1"))))
    params = ProjectParams(
        initial_model_cid="bafkrei" + "i" * 52,
        initial_model_sha256=_sha("initial"),
        config_cid="bafkrei" + "c" * 52,
        config_sha256=_sha("config"),
        validation_root=tree.root.hex(),
        rounds=2,
        round_duration=DURATION,
        reveal_window=REVEAL,
        aggregation_window=AGGREGATION,
        min_stake=10**16,
        max_trainers=4,
        aggregator=aggregator.address,
        arbiter=arbiter.address,
        challenge_window=0,
        challenge_bond=0,
    )
    pid = market.create_project(owner, params, 10**18)
    salts = {t.address: hashlib.sha256(t.address.encode()).digest() for t in (a, b)}
    for trainer in (a, b):
        market.register(trainer, pid, 10**16)
        seal = market.commitment_of(pid, 0, trainer.address, _sha(trainer.address), salts[trainer.address])
        market.commit_update(trainer, pid, 0, seal)

    def check(expected_error: str | None) -> None:
        info, now = market.project(pid), chain_client.timestamp()
        only_a = _result([a.address], [1], [])
        both = _result(sorted([a.address, b.address], key=lambda x: int(x, 16)), [1, 1], [])
        revealed = {0: _result([], [], []), 1: only_a, 2: both}[info.round_reveals]
        assert _finalize_reverts_for_timing(market, aggregator, pid, revealed) == expected_error
        assert (finalize_blocker(info, now) is None) == (expected_error is None)

    def reveal(trainer) -> None:
        cid = "bafkrei" + trainer.address[2:].lower() + "a" * 12
        market.reveal_update(trainer, pid, 0, cid, _sha(trainer.address), salts[trainer.address])

    opened = market.project(pid).round_opened_at
    check("RoundStillOpen")  # commits are open
    chain_client.w3.provider.make_request("evm_mine", [opened + DURATION])
    check("RoundStillOpen")  # the commit window's last second
    chain_client.w3.provider.make_request("evm_mine", [opened + DURATION + 1])
    market.reveal_validation(owner, pid, 0, "bafkrei" + "v" * 52, _sha("shard 0"), tree.proof(0))
    reveal(a)
    check("RoundStillOpen")  # b has not revealed and the reveal window is open
    reveal(b)
    check(None)  # every committer revealed: early finalization
    for at in (opened + DURATION + REVEAL, opened + DURATION + REVEAL + AGGREGATION):
        chain_client.w3.provider.make_request("evm_mine", [at])
        check(None)
    chain_client.w3.provider.make_request("evm_mine", [opened + DURATION + REVEAL + AGGREGATION + 1])
    check("AggregationDeadlinePassed")


def test_revert_classes_belong_to_one_contract(chain_client, dev_accounts):
    market = TrainingMarket(chain_client)
    with pytest.raises(TrainingMarket.errors.UnknownProject) as caught:
        market.project(999)
    assert isinstance(caught.value, ContractRevert) and caught.value.error_args == {"projectId": 999}
    assert type(caught.value).__qualname__ == "TrainingMarket.UnknownProject"
    assert TrainingMarket.errors.UnknownProject is revert_class("TrainingMarket", "UnknownProject")
    # The same name in two contracts is two classes: catching one never catches the other.
    assert not issubclass(
        TrainingMarket.errors.ReentrancyGuardReentrantCall,
        VerifierCommittee.errors.ReentrancyGuardReentrantCall,
    )
    # An error raised by a contract the call reached is decoded as that contract's: the committee asks the market
    # about a project it does not have, and the market's UnknownProject comes back through the committee.
    committee = VerifierCommittee(chain_client)
    with pytest.raises(TrainingMarket.errors.UnknownProject) as bubbled:
        committee.pin_snapshot(dev_accounts[0], market.address, 999, 0)
    assert bubbled.value.contract == "VerifierCommittee"
    with pytest.raises(VerifierCommittee.errors.MarketNotContract):
        committee.pin_snapshot(dev_accounts[0], dev_accounts[1].address, 1, 0)


def _error_names_used_in_code() -> set[tuple[str, str]]:
    """(contract, error) for every `X.errors.Name` and `revert_class("C", "Name")` in our Python."""
    facades = {"TrainingMarket", "VerifierCommittee", "AccessRegistry", "SourceRegistry"}
    used = set()
    for path in [*ROOT.glob("backend/**/*.py"), *ROOT.glob("rag/**/*.py"), *ROOT.glob("tests/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Attribute)
                and node.value.attr == "errors"
                and isinstance(node.value.value, ast.Name)
                and node.value.value.id in facades
            ):
                used.add((node.value.value.id, node.attr))
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", None) == "revert_class"
                and len(node.args) == 2
                and all(isinstance(a, ast.Constant) for a in node.args)
            ):
                used.add((node.args[0].value, node.args[1].value))
    return used


def test_every_error_the_code_catches_exists_in_that_contract(compiled_artifacts):
    missing = []
    for contract, name in sorted(_error_names_used_in_code()):
        errors = {i["name"] for i in compiled_artifacts.abi(contract) if i.get("type") == "error"}
        if name not in errors | {"Error", "Panic"}:
            missing.append(f"{contract}.{name}")
    assert not missing, f"caught but never raised by that contract: {missing}"
