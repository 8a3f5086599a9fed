"""Which sources a query asks: Thompson sampling, one source per group, and a floor for the under-observed.

Thompson sampling (Thompson 1933; Chapelle and Li, "An Empirical Evaluation of Thompson Sampling", NeurIPS 2011;
for Bernoulli bandits, Agrawal and Goyal, AISTATS 2012) draws one value from each source's Beta posterior and
asks the sources with the highest draws. It keeps exploring in proportion to uncertainty, so no handful of
sources locks in the traffic after a few batches (the top-m Bayes-UCB rule it replaces asked the same four
sources for the rest of a run), while a source with a long bad record is still drawn rarely, and a newcomer's
pessimistic prior (Beta(1, 4)) is drawn above an established good record only seldom, so whitewashing buys
little exploration.

Diversity: sources of one group (one operator's wallet, or copies found by `rag.independence`) are one witness;
a query asks at most one of each group while other groups remain, so seven copies cannot take seven slots.
Floor: each query keeps `floor_slots` slots for sources with fewer than `floor_evidence` observations (chosen
by the same draws), so a newcomer or a source whose commitment was just reset gets measured. A group counts as
observed once any member is (copies share one record for exploring), so an operator's seventh copy gets no floor
slot its six measured siblings already had.
Cut-off: beyond those, a source with a record is asked only if its draw is at least `cutoff`, by default the
accuracy below which what a source states is evidence against it (`1 / (FALSE_VALUES + 1)`, see
`rag.reliability.vote_weight`): every source that is a witness for what it says may fill a slot (more
independent witnesses decide conflicting versions better), while diversity never forces a known liar in (the others
are each asked for the query's whole document budget anyway). The threshold is absolute,
not relative to the best draw: a good source must not crowd out the witnesses that would outvote it when it
errs.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from rag.errors import RagError
from rag.reliability import FALSE_VALUES, Posterior

__all__ = ["sample_sources"]


def sample_sources(
    posteriors: Mapping[int, Posterior],
    m: int,
    rng: random.Random,
    *,
    groups: Mapping[int, int] | None = None,
    floor_slots: int = 1,
    floor_evidence: float = 10.0,
    cutoff: float = 1.0 / (FALSE_VALUES + 1),
) -> list[int]:
    """Up to `m` distinct sources, in the order of their draws (best first); see the module docstring."""
    if m < 1:
        raise RagError(f"must sample at least one source, got m={m}")
    if not posteriors:
        raise RagError("no sources to sample from")
    if floor_slots < 0 or floor_evidence < 0:
        raise RagError("floor_slots and floor_evidence must not be negative")
    groups = groups or {}
    draws = {sid: rng.betavariate(p.alpha, p.beta) for sid, p in sorted(posteriors.items())}
    ranked = sorted(draws, key=lambda sid: (-draws[sid], sid))
    chosen: list[int] = []
    used: set[int] = set()

    def take(candidates: list[int], limit: int, distinct: bool) -> None:
        for sid in candidates:
            if len(chosen) >= limit:
                return
            group = groups.get(sid, sid)
            if sid in chosen or (distinct and group in used):
                continue
            chosen.append(sid)
            used.add(group)

    observed: dict[int, float] = {}
    for sid, posterior in posteriors.items():
        group = groups.get(sid, sid)
        observed[group] = max(observed.get(group, 0.0), posterior.evidence)
    under = [sid for sid in ranked if observed[groups.get(sid, sid)] < floor_evidence]
    take(under, min(floor_slots, m), distinct=True)
    # Unknown sources are never cut off (the cut-off keeps out those whose record is known to be bad).
    competitive = [sid for sid in ranked
                   if draws[sid] >= cutoff or observed[groups.get(sid, sid)] < floor_evidence]  # fmt: skip
    take(competitive, m, distinct=True)
    take(competitive, m, distinct=False)  # fewer groups than slots: second members fill the rest
    return sorted(chosen, key=lambda sid: (-draws[sid], sid))
