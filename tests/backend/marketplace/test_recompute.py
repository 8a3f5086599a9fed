"""`verify_round` against a real anvil with the deployed TrainingMarket and a LocalStore in tmp_path: honest rounds
match, results posted by a dishonest aggregator (straight through `TrainingMarket.finalize_round`) do not, and the
mismatch names what differs."""

from __future__ import annotations

import json

import pytest
from marketplace_helpers import Marketplace, Project, open_marketplace, round_result

from aggregator.report import model_bytes
from backend.chain.training_market import RoundResult
from backend.marketplace.errors import RoundNotReady
from backend.marketplace.publish import put_ref
from backend.marketplace.recompute import VerificationIncomplete, VerifyReport, verify_round
from backend.storage import KuboStore, LocalStore, StoreUnavailable, compute_cid

pytestmark = pytest.mark.chain


@pytest.fixture
def marketplace(chain_client, dev_accounts, tmp_path) -> Marketplace:
    return open_marketplace(chain_client, dev_accounts, tmp_path)


def _by_address(addresses) -> list[str]:
    return sorted(addresses, key=lambda a: int(a, 16))


def _post(m: Marketplace, project: Project, round_: int, **changes) -> dict:
    """Finalize `round_` as a dishonest aggregator would: compute the honest outcome, then post it with `changes`
    (scores, flagged, model or report bytes) through the facade, bypassing the runner. Returns the honest
    values for comparison."""
    _, outcome = m.runner().compute(project.id, round_)
    model = put_ref(m.store, changes.get("model_bytes", outcome.model_bytes))
    report = put_ref(m.store, changes.get("report_bytes", outcome.report_bytes))
    scores = dict(changes.get("scores", outcome.scores_fixed))
    trainers = _by_address(scores)
    result = RoundResult(
        model_cid=changes.get("model_cid", model.cid),
        model_sha256=model.sha256,
        trainers=trainers,
        scores=[scores[t] for t in trainers],
        flagged=_by_address(changes.get("flagged", outcome.flagged)),
        report_cid=report.cid,
        report_sha256=report.sha256,
    )
    m.market.finalize_round(m.aggregator, project.id, round_, result)
    return {"outcome": outcome, "model": model, "report": report}


def _round(m: Marketplace, rounds: int = 1) -> Project:
    project = m.create(rule="fedavg", n_trainers=5, rounds=rounds)
    m.submit_honest(project)
    return project


def test_an_honest_round_verifies(marketplace):
    m = marketplace
    project = _round(m)
    done = m.runner().finalize(project.id, 0)

    report = verify_round(m.market, m.store, project.id, 0)

    assert isinstance(report, VerifyReport)
    assert report.match is True and report.mismatches == []
    assert report.recomputed_digest == report.onchain_digest == m.market.round(project.id, 0).result_digest
    assert report.onchain_digest != "00" * 32
    assert report.to_dict() == {
        "project": project.id,
        "round": 0,
        "match": True,
        "onchain_digest": report.onchain_digest,
        "recomputed_digest": report.onchain_digest,
        "mismatches": [],
    }
    assert m.market.result_digest_of(project.id, 0, round_result(done)) == report.onchain_digest


def test_a_later_round_verifies_from_the_previous_rounds_posted_model_and_report(marketplace):
    m = marketplace
    project = _round(m, rounds=2)
    runner = m.runner()
    runner.finalize(project.id, 0)
    m.submit_honest(project)
    runner.finalize(project.id, 1)

    for round_ in (0, 1):
        report = verify_round(m.market, m.store, project.id, round_)
        assert report.match, report.mismatches


def test_altered_scores_are_a_mismatch_naming_each_trainer(marketplace):
    m = marketplace
    project = _round(m)
    _, honest = m.runner().compute(project.id, 0)
    a, b = _by_address(honest.scores_fixed)[:2]
    assert honest.scores_fixed[a] != honest.scores_fixed[b]
    swapped = {**honest.scores_fixed, a: honest.scores_fixed[b], b: honest.scores_fixed[a]}
    _post(m, project, 0, scores=swapped)

    report = verify_round(m.market, m.store, project.id, 0)

    assert report.match is False
    assert report.recomputed_digest != report.onchain_digest
    assert report.mismatches == [
        f"score of {a}: posted {honest.scores_fixed[b]}, recomputed {honest.scores_fixed[a]}",
        f"score of {b}: posted {honest.scores_fixed[a]}, recomputed {honest.scores_fixed[b]}",
    ]


def test_an_honest_trainer_flagged_by_the_aggregator_is_a_mismatch(marketplace):
    m = marketplace
    project = _round(m)
    _, honest = m.runner().compute(project.id, 0)
    victim = next(t for t in _by_address(honest.scores_fixed) if honest.scores_fixed[t] > 0)
    _post(m, project, 0, scores={**honest.scores_fixed, victim: 0}, flagged=[victim])

    report = verify_round(m.market, m.store, project.id, 0)

    assert report.match is False
    assert f"score of {victim}: posted 0, recomputed {honest.scores_fixed[victim]}" in report.mismatches
    assert f"flag of {victim}: only the posted result flags it" in report.mismatches


def test_another_model_is_a_mismatch_naming_the_model_hash(marketplace):
    m = marketplace
    project = _round(m)
    _, honest = m.runner().compute(project.id, 0)
    other = {k: v + 0.01 for k, v in honest.global_state.items()}
    posted = _post(m, project, 0, model_bytes=model_bytes(other))

    report = verify_round(m.market, m.store, project.id, 0)

    assert report.match is False and report.recomputed_digest != report.onchain_digest
    assert report.mismatches == [
        f"model sha256: posted {posted['model'].sha256}, recomputed {honest.model_sha256}"
    ]


def test_another_report_is_a_mismatch_naming_the_report_hash(marketplace):
    m = marketplace
    project = _round(m)
    _, honest = m.runner().compute(project.id, 0)
    forged = json.loads(honest.report_bytes)
    forged["metrics"]["accuracy_after"] = 1.0
    posted = _post(m, project, 0, report_bytes=json.dumps(forged).encode())

    report = verify_round(m.market, m.store, project.id, 0)

    assert report.match is False
    assert report.mismatches == [
        f"report sha256: posted {posted['report'].sha256}, recomputed {honest.report_sha256}"
    ]


def test_a_posted_model_cid_that_does_not_serve_the_model_is_a_mismatch(marketplace):
    m = marketplace
    project = _round(m)
    nowhere = compute_cid(
        b"not the model"
    )  # the right hash goes on chain, with a CID nobody can fetch it from
    _post(m, project, 0, model_cid=nowhere)

    report = verify_round(m.market, m.store, project.id, 0)

    assert report.recomputed_digest == report.onchain_digest  # the digest covers hashes, not CIDs
    assert report.match is False
    assert len(report.mismatches) == 1
    assert report.mismatches[0].startswith(f"model CID {nowhere} does not serve the posted model")


def test_verifying_an_unfinalized_round_is_round_not_ready(marketplace):
    m = marketplace
    project = _round(m, rounds=2)
    with pytest.raises(RoundNotReady, match="round 0 has not been finalized"):
        verify_round(m.market, m.store, project.id, 0)
    m.runner().finalize(project.id, 0)
    with pytest.raises(RoundNotReady, match="round 1 has not been finalized"):
        verify_round(m.market, m.store, project.id, 1)


def test_a_store_that_is_down_stops_verification_instead_of_reporting_a_mismatch(marketplace, tmp_path):
    m = marketplace
    project = _round(m)
    m.runner().finalize(project.id, 0)
    with pytest.raises(StoreUnavailable):
        verify_round(m.market, KuboStore("http://127.0.0.1:9", timeout=2.0), project.id, 0)


def test_a_verifier_with_its_own_copy_of_the_content_reaches_the_same_digest(marketplace, tmp_path):
    m = marketplace
    project = _round(m)
    m.runner().finalize(project.id, 0)
    copy = LocalStore(tmp_path / "verifier")
    for cid in m.store.pins():
        copy.put(m.store.get(cid))

    report = verify_round(m.market, copy, project.id, 0)

    assert report.match, report.mismatches


def test_a_verifier_missing_an_update_the_aggregator_used_cannot_verify_rather_than_mismatch(
    marketplace, tmp_path
):
    m = marketplace
    project = _round(m)
    m.runner().finalize(project.id, 0)
    skipped = m.market.submissions(project.id, 0)[0]
    copy = LocalStore(tmp_path / "verifier")
    for cid in m.store.pins():
        if cid != skipped.cid:
            copy.put(m.store.get(cid))

    with pytest.raises(VerificationIncomplete, match=f"lacks the update of {skipped.trainer}"):
        verify_round(m.market, copy, project.id, 0)
