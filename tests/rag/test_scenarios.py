"""Scenarios described as data (`rag eval --scenario-file`): what a file may say, and the one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.errors import RagError
from rag.scenarios import SCENARIOS, SourceSpec, build_copies, load_scenario, scenario_from_dict


def test_counts_expand_and_fields_carry_over():
    scenario = scenario_from_dict({
        "name": "five-collude",
        "description": "1 clean, 5 on one polluted copy",
        "target_fraction": 0.5,
        "sources": [{}, {"pollution": 1, "stream": 100, "operator": 7, "attacker": True, "count": 5}],
    })  # fmt: skip
    assert scenario.name == "five-collude" and scenario.target_fraction == 0.5
    assert scenario.sources == (SourceSpec(),) + (SourceSpec(1.0, 100, 7, attacker=True),) * 5


def test_a_named_scenario_round_trips(tmp_path):
    spec = SCENARIOS["sleeper"]
    path = tmp_path / "sleeper.json"
    path.write_text(json.dumps({"name": spec.name, "description": spec.description,
                                "sources": [vars(s) for s in spec.sources]}))  # fmt: skip
    assert load_scenario(path) == spec


def test_a_file_is_named_after_itself_unless_it_says(tmp_path, squad):
    path = tmp_path / "my-attack.json"
    path.write_text('{"sources": [{"pollution": 0}, {"pollution": 1, "stream": 9, "count": 2}]}')
    scenario = load_scenario(path)
    assert scenario.name == "my-attack" and len(scenario.sources) == 3
    copies = build_copies(squad, scenario, seed=0)
    # The two copies on one stream hold the same documents and still register as distinct corpora.
    assert copies[1].pollution.polluted == copies[2].pollution.polluted
    assert len({c.corpus.commitment for c in copies}) == 3


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "a JSON object with a 'sources' list"),
        ({"sources": []}, "non-empty 'sources' list"),
        ({"sources": [{}, {}], "mode": "x"}, "unknown scenario key(s): mode"),
        ({"sources": [{}, {"polution": 1}]}, "source 1: unknown key(s) polution"),
        ({"sources": [{}, 3]}, "source 1: a source is a JSON object"),
        ({"sources": [{}, {"count": 0}]}, "count must be an integer in [1, 1000]"),
        ({"sources": [{}, {"count": True}]}, "count must be an integer"),
        ({"sources": [{}, {"pollution": "half"}]}, "pollution must be a number"),
        ({"sources": [{}, {"pollution": float("nan")}]}, "source 1: pollution must lie in [0, 1]"),
        ({"sources": [{}, {"pollution": 1.5}]}, "source 1: pollution must lie in [0, 1]"),
        ({"sources": [{}, {"attacker": 1}]}, "attacker must be true or false"),
        ({"sources": [{}, {"stream": 1.5}]}, "stream must be an integer or null"),
        ({"sources": [{}, {"turn_at": 0}]}, "source 1: a sleeper turns at query 1 or later"),
        ({"sources": [{}]}, "at least two sources"),
        ({"sources": [{}, {}], "target_fraction": 0}, "target_fraction must lie in (0, 1]"),
        ({"sources": [{}, {}], "target_fraction": float("inf")}, "target_fraction must lie in (0, 1]"),
        ({"sources": [{}, {}], "name": 3}, "name and description are strings"),
    ],
)
def test_malformed_scenarios_are_refused(data, message):
    with pytest.raises(RagError) as info:
        scenario_from_dict(data)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [(None, "no scenario file at"), ("{", "not a JSON scenario"), (b"\xff\xfe", "not a JSON scenario"),
     ('{"sources": [{}]}', "at least two sources")],
)  # fmt: skip
def test_bad_files_name_themselves(tmp_path, text, message):
    path = tmp_path / "s.json"
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text)
    with pytest.raises(RagError) as info:
        load_scenario(path)
    assert message in str(info.value) and str(path) in str(info.value)
    assert len(str(info.value).splitlines()) == 1


def test_sleepers_turn_each_at_its_own_query(squad, embedder):
    """Two sleepers on one stream, turning at users' query 3 and 7: at query 5 only the first serves (and the
    centralized baseline holds) its polluted documents."""
    from rag.evaluation import _Centralized, _ServingIndex
    from rag.orchestrator import OrchestratorConfig
    from rag.reader import ExtractiveReader
    from rag.scenarios import Scenario

    small = squad.with_documents(squad.documents[:8])
    cell = Scenario(
        "cell", "", (SourceSpec(), SourceSpec(1.0, stream=5, turn_at=3), SourceSpec(1.0, stream=5, turn_at=7))
    )
    copies = build_copies(small, cell, seed=0)
    early, late = (_ServingIndex(copy, embedder) for copy in copies[1:])

    def turned(index, query: int) -> bool:
        index.at(query)
        return any(
            "~" in index.corpus.documents[h.position].doc_id
            for h in index.search("the", k=len(small.documents))
        )

    assert [turned(early, q) for q in (2, 3, 5, 7)] == [False, True, True, True]
    assert [turned(late, q) for q in (2, 3, 5, 7)] == [False, False, False, True]
    central = _Centralized(copies, embedder, ExtractiveReader(embedder), OrchestratorConfig(), done=5)
    held = {d.doc_id.split("/")[0] for d in central.corpus.documents if "~" in d.doc_id}
    assert held == {"1"}


@pytest.mark.parametrize(
    "path",
    sorted((Path(__file__).resolve().parents[2] / "bench" / "rag_scenarios").glob("*.json")),
    ids=lambda p: p.stem,
)
def test_the_benchmarked_scenario_files_load(path, squad):
    """The files docs/benchmarks.md runs (`rag eval --scenario-file bench/rag_scenarios/NAME.json`)."""
    scenario = load_scenario(path)
    assert scenario.name == path.stem and any(s.attacker for s in scenario.sources)
    copies = build_copies(squad, scenario, seed=0)
    assert len({c.corpus.commitment for c in copies}) == len(copies)  # each registers as a corpus of its own
