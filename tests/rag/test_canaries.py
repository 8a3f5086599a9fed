"""Canaries (pool, rotation, bytes, judging, tampering, how many) and the attack scenarios' copies."""

from __future__ import annotations

import math

import pytest

from rag.canaries import (
    Canary,
    CanarySchedule,
    answer_correct,
    canaries_needed,
    canaries_to_catch,
    canary_fraction,
    canary_pool,
    decode_canaries,
    encode_canaries,
    load_canaries,
    tampered,
)
from rag.errors import CorpusError, RagError
from rag.pollution import pollute
from rag.scenarios import SCENARIOS, Scenario, SourceSpec, build_copies


def test_pool_rotation_and_interleaving(squad):
    pool = canary_pool(squad, 0.5, seed=3)
    assert pool == canary_pool(squad, 0.5, seed=3) and 200 < len(pool) < 240
    assert all(any(a in c.passage for a in c.answers) for c in pool)
    schedule = CanarySchedule(pool[:5], per_epoch=2, seed=1)
    seen = [c.id for epoch in range(1, 5) for c in schedule.plan(epoch)]
    assert len(seen) == 5 and len(set(seen)) == 5  # each canary asked once, then retired; the pool runs dry
    assert schedule.plan(1) == schedule.plan(1)
    stream = schedule.interleave(1, ["a", "b", "c"])
    assert [x for x in stream if isinstance(x, str)] == ["a", "b", "c"]
    assert sorted(x.id for x in stream if isinstance(x, Canary)) == sorted(c.id for c in schedule.plan(1))
    with pytest.raises(RagError):
        canary_pool(squad, 0.0, seed=0)
    with pytest.raises(RagError):
        CanarySchedule(pool, per_epoch=-1, seed=0)


def test_a_probation_epoch_draws_its_own_count(squad):
    pool = canary_pool(squad, 0.5, seed=3)
    schedule = CanarySchedule(pool, per_epoch=1, seed=0)
    schedule.set_count(7, 10)  # a probation epoch: only canaries, a whole epoch of them
    assert len(schedule.interleave(7, [])) == 10 and len(schedule.plan(8)) == 1
    with pytest.raises(RagError, match="already drawn"):
        schedule.set_count(8, 3)
    with pytest.raises(RagError, match="negative"):
        schedule.set_count(9, -1)


def test_canary_bytes_round_trip_and_bad_files(tmp_path, squad):
    pool = canary_pool(squad, 0.1, seed=0)
    data = encode_canaries(pool)
    assert decode_canaries(data) == pool and encode_canaries(decode_canaries(data)) == data
    path = tmp_path / "canaries.jsonl"
    path.write_bytes(data)
    assert load_canaries(path) == pool
    for bad in (
        b'{"id": 1}\n',
        b"not json\n",
        b'{"id": "x", "question": "q", "answers": [], "passage": "p"}\n',
    ):
        with pytest.raises(CorpusError, match="line 1"):
            decode_canaries(bad)
    with pytest.raises(CorpusError, match="no canary file"):
        load_canaries(tmp_path / "absent.jsonl")


def test_judging_and_tampering(squad):
    copy, record = pollute(squad, 1.0, seed=0, source_index=4)
    pool = {c.id: c for c in canary_pool(squad, 1.0, seed=0)}
    versions = {o.text: d.text for d, o in zip(copy.documents, squad.documents, strict=True)}
    # A canary whose passage the polluted copy changed so that no gold answer is left in it.
    hit = next(c for qid, c in pool.items() if qid in record.planted
               and not any(a in versions[c.passage] for a in c.answers))  # fmt: skip
    original, polluted = hit.passage, versions[hit.passage]
    assert not tampered(original, hit) and tampered(polluted, hit)
    assert not tampered(squad.documents[-1].text, hit)  # another passage is no evidence of anything
    assert answer_correct(f"It was {hit.answers[0]}.", hit) and not answer_correct("Nobody knows.", hit)


def test_how_many_canaries():
    # Telling accuracy 0.75 from 0.25 at 95%: 2 ln(80) / 0.25 = 35.06 -> 36 judged canaries per source.
    assert canaries_needed(0.5, 0.05) == math.ceil(2 * math.log(80) / 0.25) == 36
    assert canaries_needed(0.2, 0.05) > canaries_needed(0.5, 0.05) > canaries_needed(0.5, 0.2)
    # Six sources, four asked per query, within 300 queries: 36 * 6 / (4 * 300) = 18% of the queries.
    assert canary_fraction(0.5, 0.05, 300, 4, 6) == pytest.approx(0.18)
    # A source tampering with a fifth of the passages is caught within 14 canaries with 95% probability.
    assert canaries_to_catch(0.2, 0.05) == 14 and canaries_to_catch(1.0, 0.05) == 1
    for bad in [(0.0, 0.05), (0.5, 1.0)]:
        with pytest.raises(RagError):
            canaries_needed(*bad)
    with pytest.raises(RagError):
        canary_fraction(0.5, 0.05, 300, 7, 6)


def test_scenarios_build_the_copies_the_issue_describes(squad):
    collude = build_copies(squad, SCENARIOS["collude"], seed=0)
    assert [c.spec.attacker for c in collude] == [False, False, True, True, True, True]
    # The four colluders serve the same polluted documents; distinct commitments (one note each) to register.
    served = [
        tuple(d.text for d in c.view.documents if d.doc_id != f"source-note#{c.index}") for c in collude
    ]
    assert served[2] == served[3] == served[4] == served[5] != served[0] == served[1]
    assert len({c.corpus.commitment for c in collude}) == 6
    sybil = build_copies(squad, SCENARIOS["sybil"], seed=0)
    assert len(sybil) == 12 and len({c.operator for c in sybil if c.attacker}) == 1
    (sleeper,) = [c for c in build_copies(squad, SCENARIOS["sleeper"], seed=0) if c.spec.turn_at]
    assert sleeper.clean_view is not None and sleeper.spec.turn_at == 151
    committed = {d.doc_id for d in sleeper.corpus.documents}
    assert (
        {d.doc_id for d in sleeper.view.documents}
        <= committed
        >= {d.doc_id for d in sleeper.clean_view.documents}
    )
    targeted = build_copies(squad, SCENARIOS["targeted"], seed=0)
    hit = targeted[2].pollution.polluted
    assert hit == targeted[5].pollution.polluted and 15 <= len(hit) <= 30  # a fifth of the answerable ones
    with pytest.raises(RagError):
        Scenario("one", "too small", (SourceSpec(),))
    with pytest.raises(RagError):
        SourceSpec(pollution=1.5)
