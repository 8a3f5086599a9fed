"""Reports read defensively: a real pipeline report, older and newer shapes, confidence intervals under any
name, and documents that cannot be had (missing, not matching the chain, not JSON, a store that is down)."""

from __future__ import annotations

import json

from backend.api.explorer.reports import ContentCache, parse_report
from backend.storage import KuboStore, LocalStore, sha256_hex

ENTRY = {
    "status": "flagged",
    "flags": [{"reason": "free_rider", "detail": {"norm": 0.0, "median_norm": 1.0, "ratio": 0.05}}],
    "aggregation_weight": 0.0,
    "score": 0.0,
    "score_fixed": "0",
    "valuation": None,
    "update_sha256": "ab" * 32,
    "outlier_stats": {"norm": 0.0, "z_score": float("nan"), "label": "x"},
}


def test_a_report_entry_becomes_words_and_figures():
    report = parse_report(
        {
            "version": 1,
            "rule": {"name": "multi_krum", "params": {"f": 1}, "details": {}},
            "outlier_config": {"free_rider_ratio": 0.05},
            "contribution": {
                "config": {"method": "gtg_shapley", "utility": "neg_loss"},
                "basis": "gtg_shapley",
            },
            "metrics": {"accuracy_after": 0.9, "loss_after": "bad"},
            "trainers": {"0xAbC": ENTRY, "0xdef": "nonsense"},
            "flagged": ["0xAbC"],
        }
    )
    entry = report.trainer("0xabc")
    assert entry is not None and entry.status == "flagged" and entry.score_fixed == 0
    assert entry.flags[0].title == "free rider" and entry.flags[0].sentence.startswith("update all zeros")
    assert entry.stats == {"norm": 0.0}  # NaN and text are dropped, not shown
    assert report.metrics == {"accuracy_after": 0.9}
    assert report.rule == "multi_krum" and report.contribution_method == "gtg_shapley"
    assert report.problems == ["the entry of 0xdef is not an object"]


def test_confidence_intervals_are_found_under_the_names_a_report_may_use():
    for key, value in (
        ("score_interval", [0.3, 0.1]),
        ("score_ci", {"low": 0.1, "high": 0.3}),
        ("confidence_interval", {"lo": 0.1, "hi": 0.3}),
    ):
        report = parse_report({"trainers": {"0x1": {"score": 0.2, key: value}}, "metrics": {"loss_after": 1}})
        assert report.trainers["0x1"].interval == (0.1, 0.3)
    assert parse_report({"trainers": {"0x1": {"score_ci": [None, 1]}}}).trainers["0x1"].interval is None


def test_something_that_is_not_a_report_is_named_not_raised():
    assert parse_report([1, 2]).problems == ["the report is not a JSON object"]
    assert "the report lists no trainers" in parse_report({"version": 9}).problems


def test_documents_that_cannot_be_had_say_why(tmp_path):
    store = LocalStore(tmp_path / "store")
    doc = json.dumps({"version": 1}).encode()
    cid = store.put(doc)
    cache = ContentCache(store)
    assert cache.json(cid, sha256_hex(doc)).document == {"version": 1}
    assert cache.json(cid, "00" * 32).error == "the stored bytes do not match the sha256 on chain"
    other = LocalStore(tmp_path / "empty")
    assert ContentCache(other).json(cid, sha256_hex(doc)).error == "not in the content store"
    text = b"not json"
    bad = store.put(text)
    assert cache.json(bad, sha256_hex(text)).error.startswith("not JSON")
    down = ContentCache(KuboStore("http://127.0.0.1:9"))
    assert down.json(cid, sha256_hex(doc)).error.startswith("the content store is unreachable")


def test_a_report_names_its_task_and_an_older_one_reads_as_a_classifier():
    regression = parse_report(
        {
            "task": {"name": "regression", "loss": "mse", "metric": "r2"},
            "metrics": {"r2_after": 0.4, "mse_after": 2900.0, "loss_after": 2900.0},
            "trainers": {},
        }
    )
    assert (regression.task, regression.metric_name, regression.loss_name) == ("regression", "r2", "mse")
    older = parse_report({"metrics": {"accuracy_after": 0.9}, "trainers": {}, "task": "bad"})
    assert (older.task, older.metric_name, older.loss_name) == (None, None, None)


def test_a_report_with_defenses_reads_rejections_confidence_and_groups_in_words():
    """The report shape of the defended pipeline (#14): rejections by defenses, a 95% interval with its words,
    influence after the defenses, near-copies valued as one player, the defense steps in order."""
    from types import SimpleNamespace

    from backend.api.explorer.explain import RoundTrainer, _why

    copier, original = "0x" + "c" * 40, "0x" + "a" * 40
    report = parse_report(
        {
            "version": 2,
            "rule": {"name": "trimmed_mean", "params": {"beta": 0.25}, "details": {}},
            "defenses": [{"name": "near_copies", "params": {}}, {"name": "norm_clip", "params": {}}, 7],
            "outlier_config": {},
            "contribution": {"config": {"method": "gtg_shapley", "utility": "neg_loss"}},
            "metrics": {"loss_after": 1.0},
            "trainers": {
                copier: {
                    "status": "rejected",
                    "flags": [],
                    "rejections": [
                        {"defense": "near_copies", "reason": "an exact copy of an update submitted earlier",
                         "message": "an exact copy of an update submitted earlier",
                         "detail": {"copy_of": [original]}},
                    ],
                    "aggregation_weight": 0.0, "score": 0.0, "score_fixed": "0",
                },
                original: {
                    "status": "scored", "flags": [], "rejections": [], "aggregation_weight": 0.5,
                    "influence": 0.4, "score": 0.6, "score_fixed": "600000000000000000",
                    "score_interval": [0.5, 0.7], "score_confidence": "fairly sure",
                    "counted_with": [original, "0x" + "b" * 40],
                },
            },
        }
    )  # fmt: skip
    assert report.defenses == ("near_copies", "norm_clip")
    rejected, scored = report.trainer(copier), report.trainer(original)
    assert rejected is not None and scored is not None
    assert rejected.status == "rejected" and not rejected.flags
    [why_left_out] = rejected.rejections
    assert (why_left_out.defense, why_left_out.names) == ("near_copies", (original,))
    assert scored.interval == (0.5, 0.7) and scored.confidence == "fairly sure" and scored.influence == 0.4
    assert scored.counted_with == ("0x" + "b" * 40,)  # itself is not its own copy

    row = SimpleNamespace(report=report, report_error=None, round_pool=10**18)

    def why(entry):
        t = RoundTrainer(entry.address, entry.status, None, entry, None, 0, None, 0, "no slashing")
        return " ".join(_why(SimpleNamespace(), row, t, 0, None))

    assert "A defense left it out of the aggregate: an exact copy of an update submitted earlier" in why(
        rejected
    )
    assert "not flagged on chain" in why(rejected)
    text = why(scored)
    assert "(95% confidence 0.5 to 0.7: fairly sure)" in text
    assert "made 40.0% of the aggregate" in text and "one player with 1 near-copy" in text
    assert (rejected.verdict, scored.verdict) == ("rejected", "scored")


def test_a_sealed_rounds_windows_follow_commits_reveals_then_the_aggregator():
    """Sealed rounds (#12) put a reveal window between the commits and the aggregator's window; a market
    without one (today's `ProjectInfo` has no `reveal_window`) keeps open, closed, missed."""
    from types import SimpleNamespace

    from backend.api.explorer.ledger import Ledger
    from backend.chain.training_market import ProjectStatus

    timing = dict(status=ProjectStatus.ACTIVE, current_round=1, round_opened_at=1000, round_duration=100,
                  aggregation_window=30, project_id=7)  # fmt: skip
    sealed = SimpleNamespace(**timing, reveal_window=50)
    states = [Ledger._unfinalized(None, sealed, 1, now, 2, 10).state for now in (1050, 1120, 1170, 1181)]  # type: ignore[arg-type]
    assert states == ["open", "revealing", "closed", "missed"]
    row = Ledger._unfinalized(None, sealed, 1, 1120, 2, 10)  # type: ignore[arg-type]
    assert (row.window_end, row.reveal_end, row.aggregator_deadline) == (1100, 1150, 1180)
    plain = SimpleNamespace(**timing)
    states = [Ledger._unfinalized(None, plain, 1, now, 2, 10).state for now in (1050, 1120, 1131)]  # type: ignore[arg-type]
    assert states == ["open", "closed", "missed"]
    assert Ledger._unfinalized(None, plain, 1, 1050, 2, 10).reveal_end is None  # type: ignore[arg-type]
