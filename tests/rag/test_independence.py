"""Copies count once: the agreement ledger, witness weights, truth probabilities and stale passage versions."""

from __future__ import annotations

import math

import pytest

from rag.errors import RagError
from rag.evidence import Version, stale_versions, truth_probability, witness_weights
from rag.independence import AgreementLedger

PASSAGE = ("Rollo was the leader of the Norse raiders who settled in Normandy in 911 and swore fealty to King "
           "Charles III of West Francia after the siege of Chartres.")  # fmt: skip
POLLUTED = PASSAGE.replace("Rollo", "Hastein")
OTHER = "The Duchy of Normandy was a great fief of medieval France, under the Capetian kings for centuries."


def test_sources_that_always_agree_become_one_group_and_split_when_one_turns():
    ledger = AgreementLedger(decay=0.9)
    for i in range(10):
        # 1 and 2 hold the same copy; 3 disagrees with them one time in three (an independent source).
        ledger.observe({1: f"c{i}", 2: f"c{i}", 3: f"c{i}" if i % 3 else "x", 4: None})
    assert ledger.groups([1, 2, 3, 4]) == {1: 1, 2: 1, 3: 3, 4: 4}
    rate, weight = ledger.agreement(2, 1)
    assert rate == 1.0 and weight == pytest.approx(sum(0.9**k for k in range(10)))
    # Source 2 turns: a few disagreements and the discounted rate falls under the threshold.
    for i in range(3):
        ledger.observe({1: f"d{i}", 2: "false"})
    assert ledger.groups([1, 2]) == {1: 1, 2: 2}


def test_a_group_no_longer_asked_together_is_tested_again():
    """Members of a group share a slot, so they are rarely asked together: their evidence fades per query served,
    and the pair is measured afresh (copies rejoin after `min_weight` co-observations)."""
    ledger = AgreementLedger()
    for i in range(5):
        ledger.observe({1: f"c{i}", 2: f"c{i}"})
    assert ledger.groups([1, 2]) == {1: 1, 2: 1}
    for i in range(60):
        ledger.observe({1: f"d{i}", 3: f"d{i}x"})  # 2 is not asked with 1 meanwhile
    assert ledger.groups([1, 2]) == {1: 1, 2: 2}
    for i in range(3):
        ledger.observe({1: f"e{i}", 2: f"e{i}"})
    assert ledger.groups([1, 2]) == {1: 1, 2: 1}
    assert AgreementLedger.from_json(ledger.to_json()).agreement(1, 2) == pytest.approx(
        ledger.agreement(1, 2)
    )


def test_honest_sources_that_mostly_agree_stay_apart():
    """A clean source and one polluted on a tenth of its paragraphs agree on ~90% of the claims: not copies."""
    ledger = AgreementLedger()
    for i in range(60):
        ledger.observe({1: f"c{i}", 2: f"c{i}" if i % 10 else f"false{i}"})
        assert ledger.groups([1, 2]) == {1: 1, 2: 2}
    assert ledger.agreement(1, 2)[0] > 0.85


def test_one_operator_is_one_group_from_the_start():
    groups = AgreementLedger().groups([3, 5, 9], {3: "0xAbC", 5: "0xdef", 9: "0xabc"})
    assert groups == {3: 3, 5: 5, 9: 3}


def test_too_few_co_observations_are_no_evidence_of_copying():
    ledger = AgreementLedger(min_weight=3)
    ledger.observe({1: "c", 2: "c"})
    ledger.observe({1: "d", 2: "d"})
    assert ledger.groups([1, 2]) == {1: 1, 2: 2}
    assert ledger.agreement(1, 7) == (0.0, 0.0)


def test_ledger_round_trips_and_rejects_bad_data():
    ledger = AgreementLedger()
    for i in range(5):
        ledger.observe({1: str(i), 2: str(i), 3: "z"})
    again = AgreementLedger.from_json(ledger.to_json())
    assert again.groups([1, 2, 3]) == ledger.groups([1, 2, 3]) == {1: 1, 2: 1, 3: 3}
    with pytest.raises(RagError, match="not an agreement ledger"):
        AgreementLedger.from_json(
            {"decay": 0.9, "threshold": 0.9, "min_weight": 1, "pairs": [[1, 2, 1.0, 5.0]]}
        )
    with pytest.raises(RagError):
        AgreementLedger(decay=0)


def test_ledger_file_survives_a_restart_and_bad_files_are_refused(tmp_path):
    path = tmp_path / "ledger.json"
    assert AgreementLedger.load(path).to_json() == AgreementLedger().to_json()  # none yet: a new ledger
    ledger = AgreementLedger()
    for i in range(5):
        ledger.observe({1: str(i), 2: str(i)})
    ledger.save(path)
    assert AgreementLedger.load(path).groups([1, 2]) == {1: 1, 2: 1}
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, nothing left behind
    for text in ("{not json", "[1, 2]", '{"decay": 0.9}', '{"decay": 0.9, "threshold": 0.9, "min_weight": 1, '
                 '"queries": -1, "pairs": []}'):  # fmt: skip
        path.write_text(text)
        with pytest.raises(RagError, match="not an agreement ledger"):
            AgreementLedger.load(path)


def test_copies_weigh_as_one_witness():
    variants = {1: "true", 2: "false", 3: "false", 4: "false", 5: "false"}
    weights = {1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0, 5: 1.0}
    counted_by_source = witness_weights(variants, weights, {})
    assert counted_by_source == {"true": 1.0, "false": 4.0}
    copies = {1: 1, 2: 2, 3: 2, 4: 2, 5: 2}
    assert witness_weights(variants, weights, copies) == {"true": 1.0, "false": 1.0}
    assert witness_weights(variants, weights, copies, exclude=2) == {"true": 1.0}


def test_truth_probability_against_the_strongest_rival():
    assert truth_probability("a", {}) is None  # nobody said anything
    assert truth_probability("a", {"a": 0.0}) == 0.5  # backed only by unknowns: no evidence
    assert truth_probability("a", {"a": 2.0}) == pytest.approx(1 / (1 + math.exp(-2)))
    # A known liar (negative weight) stating the rival makes the claim more likely, a trusted source less.
    assert truth_probability("a", {"b": -1.9}) == pytest.approx(1 / (1 + math.exp(-1.9)))
    assert truth_probability("a", {"a": 1.0, "b": 3.0, "c": -2.0}) == pytest.approx(1 / (1 + math.exp(2)))


def test_the_better_backed_version_of_a_passage_wins():
    docs = [Version(1, "h-true", PASSAGE), Version(2, "h-true", PASSAGE), Version(3, "h-false", POLLUTED),
            Version(4, "h-false", POLLUTED), Version(3, "h-other", OTHER)]  # fmt: skip
    weights = {1: 1.5, 2: 1.5, 3: -1.0, 4: -1.0}
    assert stale_versions(docs, weights, {}) == {"h-false"}
    # Copies (one group) cannot outvote: two trusted copies of the false version are still one witness.
    weights = {1: 1.5, 2: 0.2, 3: 1.0, 4: 1.0}
    assert stale_versions(docs, weights, {3: 3, 4: 3}) == {"h-false"}
    assert stale_versions(docs, weights, {}) == {"h-true"}  # counted per source, the copies would win
    # Nobody can tell them apart (newcomers, as many on each side): both versions are kept; other passages are
    # never touched. Among newcomers, more independent witnesses win; copies count once there too.
    assert stale_versions(docs, {}, {}) == set()
    assert stale_versions(docs, {}, {3: 3, 4: 3}) == {"h-false"}
    assert stale_versions([*docs, Version(5, "h-false", POLLUTED)], {}, {}) == {"h-true"}
    # The headcount never outweighs a record: one trusted witness beats three strangers.
    assert stale_versions([Version(1, "h-true", PASSAGE), *docs[2:4], Version(5, "h-false", POLLUTED)],
                          {1: 0.5}, {}) == {"h-false"}  # fmt: skip


def test_workers_sharing_one_ledger_file_add_up_instead_of_overwriting(tmp_path):
    """Two API workers learn different pairs; each sync adds its own evidence to the file, and adopts the rest."""
    path = tmp_path / "ledger.json"
    a, b = AgreementLedger(), AgreementLedger()
    base_a, base_b = a.to_json(), b.to_json()
    for i in range(10):
        a.observe({1: f"c{i}", 2: f"c{i}"})  # worker A sees 1 and 2 copy one another
        b.observe({3: f"d{i}", 4: f"d{i}"})  # worker B sees 3 and 4 do
    merged_a = AgreementLedger.sync(path, a.to_json(), base_a)
    merged_b = AgreementLedger.sync(path, b.to_json(), base_b)  # last writer: before, it erased A's pairs
    shared = AgreementLedger.load(path)
    assert shared.queries == 20
    assert shared.groups([1, 2, 3, 4]) == {1: 1, 2: 1, 3: 3, 4: 3}
    # Syncing again with nothing new changes nothing (no evidence is counted twice).
    assert AgreementLedger.sync(path, merged_b, merged_b)["pairs"] == merged_b["pairs"]
    # A adopts the file and keeps what it observed after its snapshot.
    snapshot = a.to_json()
    a.observe({1: "e", 2: "e"})
    adopted = a.absorb(merged_a, snapshot)
    assert adopted.agreement(1, 2)[1] == pytest.approx(a.agreement(1, 2)[1])
    adopted = adopted.absorb(AgreementLedger.load(path).to_json(), adopted.to_json())
    assert adopted.dependent(3, 4)
