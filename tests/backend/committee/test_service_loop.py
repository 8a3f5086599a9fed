"""`CommitteeService.run`: each round's outcome is reported once, the pause doubles while nothing changes, and an
unreachable chain is logged once per distinct error."""

from __future__ import annotations

import logging

from backend.chain.errors import ChainUnavailable
from backend.committee.service import CommitteeService, RoundOutcome


def loop_over(passes):
    """A service whose passes are scripted (each item: outcomes, or an exception to raise)."""
    service = object.__new__(CommitteeService)
    script = iter(passes)

    def run_once(from_block=0):
        step = next(script)
        if isinstance(step, Exception):
            raise step
        return step

    service.run_once = run_once  # type: ignore[method-assign]
    return service, len(passes)


def test_outcomes_are_reported_once_and_the_pause_backs_off(caplog):
    waiting = RoundOutcome(1, 0, "signed", "waiting for a quorum: 1 of 2")
    down = ChainUnavailable("cannot reach the chain at http://x")
    passes = [
        [waiting],
        [waiting],
        [waiting],
        down,
        down,
        [waiting],
        [RoundOutcome(1, 0, "attested", "2 signers")],
    ]
    service, count = loop_over(passes)
    seen, pauses = [], []
    with caplog.at_level(logging.WARNING):
        service.run(poll=1, max_poll=4, until=lambda: len(pauses) == count, on_outcome=seen.append,
                    sleep=pauses.append)  # fmt: skip
    assert [o.action for o in seen] == ["signed", "attested"]
    assert pauses == [1, 2, 4, 4, 4, 4, 1]
    assert sum("cannot reach the chain" in r.message for r in caplog.records) == 1
