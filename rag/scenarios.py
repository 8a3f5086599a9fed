"""Who holds which copy of the corpus in the reliability experiment: honest sources, colluders, Sybils, sleepers.

A scenario is a list of `SourceSpec`s. Each source holds a copy of the corpus polluted by `rag.pollution` on its
own seeded stream; sources that share a `stream` (and fraction) hold the very same polluted documents, which is
what colluders and Sybils do. Sources that share an `operator` are registered from one wallet. A sleeper
(`turn_at`) commits from the start to a corpus holding both its clean and its polluted documents and serves the
clean ones until query `turn_at`, the polluted ones after: its commitment never changes, so nothing on chain
tells the turn. A targeted source pollutes only the scenario's target documents (a seeded share of the
paragraphs), and is clean everywhere else, to build a record where it does not matter.

The contract refuses a second registration of a corpus it already holds, so copies that would be byte-identical
carry one extra document naming their source (what any attacker would do to register a copy again; honest
mirrors do the same). The named scenarios reproduce the issue that motivated them (#18): six sources polluted
independently 0..100% (`independent`, the experiment of Reliable-dRAG), 4 of 6 colluding on one polluted copy,
3 of 6 colluding, 4 of 6 polluted independently (`control`), one operator with 7 copies among 12 sources, a
sleeper that turns after 150 queries, and colluders that attack a fifth of the paragraphs only.
"""

from __future__ import annotations

import functools
import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from rag.corpus import Corpus, Document
from rag.errors import RagError
from rag.pollution import Pollution, eligible_documents, pollute

__all__ = [
    "SCENARIOS",
    "Scenario",
    "SourceCopy",
    "SourceSpec",
    "build_copies",
    "independent",
    "load_scenario",
    "scenario_from_dict",
    "with_note",
]


@dataclass(frozen=True)
class SourceSpec:
    """One source of a scenario; `attacker` marks who the experiment counts as the adversary."""

    pollution: float = 0.0
    stream: int | None = None  # pollution stream (default: the source's position); equal streams = copies
    operator: int | None = None  # wallet index (default: the source's position); equal = one operator
    turn_at: int | None = None  # a sleeper: clean before this query number, polluted from it on
    targeted: bool = False  # pollute only the scenario's target documents
    attacker: bool = False

    def __post_init__(self) -> None:
        if not math.isfinite(self.pollution) or not 0.0 <= self.pollution <= 1.0:
            raise RagError(f"pollution must lie in [0, 1], got {self.pollution}")
        if self.turn_at is not None and self.turn_at < 1:
            raise RagError(f"a sleeper turns at query 1 or later, got {self.turn_at}")


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    sources: tuple[SourceSpec, ...]
    target_fraction: float = 0.2  # share of the answerable paragraphs that targeted sources attack

    def __post_init__(self) -> None:
        if len(self.sources) < 2:
            raise RagError("the experiment needs at least two sources")
        if not 0.0 < self.target_fraction <= 1.0:
            raise RagError(f"target_fraction must lie in (0, 1], got {self.target_fraction}")


@dataclass(frozen=True)
class SourceCopy:
    """What one source registers (`corpus`) and serves before (`clean_view`) and after (`view`) a turn."""

    index: int
    spec: SourceSpec
    corpus: Corpus  # the committed documents
    view: Corpus  # what it serves (after the turn, for a sleeper)
    clean_view: Corpus | None  # a sleeper's documents before the turn, else None
    pollution: Pollution
    operator: int

    @property
    def attacker(self) -> bool:
        return self.spec.attacker

    def serves(self, query: int) -> Corpus:
        """What this source serves at users' query number `query`: a sleeper its clean documents before its turn."""
        if self.clean_view is not None and self.spec.turn_at is not None and query < self.spec.turn_at:
            return self.clean_view
        return self.view


def independent(fractions: Sequence[float]) -> Scenario:
    """Each source polluted on its own stream (the Reliable-dRAG experiment); no adversary is organized."""
    specs = tuple(SourceSpec(f, attacker=f > 0.5) for f in fractions)
    return Scenario("independent", "sources polluted independently at " + ", ".join(f"{f:.0%}" for f in fractions),
                    specs)  # fmt: skip


_CLEAN = SourceSpec(0.0)
_COPY = SourceSpec(1.0, stream=100, attacker=True)

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        independent((0.0, 0.2, 0.4, 0.6, 0.8, 1.0)),
        Scenario("collude", "4 of 6 sources serve one polluted copy (2 clean)", (_CLEAN,) * 2 + (_COPY,) * 4),
        Scenario("collude-half", "3 of 6 sources serve one polluted copy (3 clean)", (_CLEAN,) * 3 + (_COPY,) * 3),
        Scenario("control", "4 of 6 sources polluted independently (2 clean)",
                 (_CLEAN,) * 2 + tuple(SourceSpec(1.0, attacker=True) for _ in range(4))),
        Scenario("sybil", "one operator registers 7 copies of a polluted corpus beside 5 sources polluted 0..80%",
                 tuple(SourceSpec(f) for f in (0.0, 0.2, 0.4, 0.6, 0.8))
                 + (SourceSpec(1.0, stream=100, operator=100, attacker=True),) * 7),
        Scenario("sleeper", "a seventh source serves clean documents for 150 queries, then polluted ones",
                 (*tuple(SourceSpec(f) for f in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)), SourceSpec(1.0, turn_at=151, attacker=True))),
        Scenario("targeted", "4 of 6 sources serve one copy polluted on a fifth of the paragraphs only (2 clean)",
                 (_CLEAN,) * 2 + (SourceSpec(1.0, stream=100, targeted=True, attacker=True),) * 4),
    )
}  # fmt: skip


_SPEC_FIELDS = {f.name: f.type for f in fields(SourceSpec)}


def scenario_from_dict(data: object, *, default_name: str = "custom") -> Scenario:
    """A scenario described as data: `{"name", "description", "target_fraction", "sources": [spec, ...]}`.

    Each spec holds `SourceSpec`'s fields (all optional) and `count` (default 1: that many sources alike), e.g.
    `{"pollution": 1.0, "stream": 100, "attacker": true, "count": 5}` for five colluders on one copy.
    """
    if not isinstance(data, Mapping):
        raise RagError("a scenario is a JSON object with a 'sources' list")
    unknown = set(data) - {"name", "description", "target_fraction", "sources"}
    if unknown:
        raise RagError(f"unknown scenario key(s): {', '.join(sorted(unknown))}")
    raw = data.get("sources")
    if not isinstance(raw, list) or not raw:
        raise RagError("a scenario needs a non-empty 'sources' list")
    specs: list[SourceSpec] = []
    for n, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise RagError(f"source {n}: a source is a JSON object")
        unknown = set(item) - set(_SPEC_FIELDS) - {"count"}
        if unknown:
            raise RagError(f"source {n}: unknown key(s) {', '.join(sorted(unknown))}; known: "
                           f"{', '.join(_SPEC_FIELDS)}, count")  # fmt: skip
        count = item.get("count", 1)
        if not _is_int(count) or not 1 <= count <= 1000:
            raise RagError(f"source {n}: count must be an integer in [1, 1000], got {count!r}")
        kwargs: dict[str, Any] = {
            key: _spec_value(n, key, value) for key, value in item.items() if key != "count"
        }
        try:
            specs.extend([SourceSpec(**kwargs)] * count)
        except RagError as exc:
            raise RagError(f"source {n}: {exc}") from None
    name = data.get("name", default_name)
    description = data.get("description", f"{len(specs)} sources from a scenario file")
    if not isinstance(name, str) or not isinstance(description, str):
        raise RagError("a scenario's name and description are strings")
    fraction = data.get("target_fraction", 0.2)
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        raise RagError(f"target_fraction must be a number, got {fraction!r}")
    return Scenario(name, description, tuple(specs), float(fraction))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _spec_value(n: int, key: str, value: object) -> object:
    if key == "pollution":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RagError(f"source {n}: pollution must be a number, got {value!r}")
        return float(value)
    if key in ("targeted", "attacker"):
        if not isinstance(value, bool):
            raise RagError(f"source {n}: {key} must be true or false, got {value!r}")
        return value
    if value is not None and not _is_int(value):  # stream, operator, turn_at
        raise RagError(f"source {n}: {key} must be an integer or null, got {value!r}")
    return value


def load_scenario(path: Path) -> Scenario:
    """`scenario_from_dict` of a JSON file (named after the file unless it says otherwise)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RagError(f"no scenario file at {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RagError(f"{path}: not a JSON scenario ({exc})") from None
    try:
        return scenario_from_dict(data, default_name=Path(path).stem)
    except RagError as exc:
        raise RagError(f"{path}: {exc}") from None


def build_copies(corpus: Corpus, scenario: Scenario, seed: int) -> list[SourceCopy]:
    """Every source's documents for `scenario`, seeded; copies that would collide get a document naming them."""
    targets = _targets(corpus, scenario.target_fraction, seed)
    copies: list[SourceCopy] = []
    for i, spec in enumerate(scenario.sources):
        stream = i if spec.stream is None else spec.stream
        polluted, record = _pollute(corpus, spec.pollution, seed, stream,
                                   within=targets if spec.targeted else None)  # fmt: skip
        clean_view = None
        committed = polluted
        if spec.turn_at is not None:
            clean_view = corpus
            turned = [Document(f"{d.doc_id}~{stream}", d.title, d.text)
                      for d, o in zip(polluted.documents, corpus.documents, strict=True) if d.text != o.text]  # fmt: skip
            committed = corpus.with_documents(corpus.documents + tuple(turned))
            renamed = {o.doc_id: f"{o.doc_id}~{stream}" for o, d in zip(corpus.documents, polluted.documents,
                                                                        strict=True) if d.text != o.text}  # fmt: skip
            polluted = corpus.with_documents(
                Document(renamed.get(d.doc_id, d.doc_id), d.title, d.text) for d in polluted.documents
            )
        operator = i if spec.operator is None else spec.operator
        copies.append(SourceCopy(i, spec, committed, polluted, clean_view, record, operator))
    return _distinct(copies)


@functools.lru_cache(maxsize=32)
def _pollute(corpus: Corpus, fraction: float, seed: int, stream: int, within: frozenset[str] | None):
    """`pollute`, once per stream: copies (colluders, Sybils) and the clean rerun share the work."""
    return pollute(corpus, fraction, seed, stream, within=within)


def _targets(corpus: Corpus, fraction: float, seed: int) -> frozenset[str]:
    eligible = eligible_documents(corpus)
    rng = random.Random(f"{seed}:targets")
    return frozenset(rng.sample(eligible, max(1, round(fraction * len(eligible)))))


def with_note(corpus: Corpus, index: int) -> Corpus:
    """`corpus` and one document naming source `index`: a copy the registry accepts beside the original."""
    note = Document(f"source-note#{index}", "Source note",
                    f"This copy of the collection is served by source number {index}.")  # fmt: skip
    return corpus.with_documents((*corpus.documents, note))


def _distinct(copies: list[SourceCopy]) -> list[SourceCopy]:
    """Give every copy whose commitment another copy already has one extra document naming its source."""
    seen: set[bytes] = set()
    out: list[SourceCopy] = []
    for copy in copies:
        if copy.corpus.commitment in seen:
            i = copy.index
            clean = with_note(copy.clean_view, i) if copy.clean_view else None
            copy = SourceCopy(i, copy.spec, with_note(copy.corpus, i), with_note(copy.view, i), clean,
                              copy.pollution, copy.operator)  # fmt: skip
        seen.add(copy.corpus.commitment)
        out.append(copy)
    return out
