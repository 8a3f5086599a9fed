"""Quota leases and revocation sync across workers: two books (or lists) over one database, as two processes
would have. No chain needed."""

from __future__ import annotations

import pytest

from backend.api.core.config import TierPolicy
from backend.api.core.errors import TooManyRequests, Unauthorized
from backend.api.core.quotas import QuotaBook
from backend.api.core.tokens import RevocationList, SessionClaims, TokenService
from backend.db import create_all, make_engine

WALLET = "0x00000000000000000000000000000000000000aa"

pytestmark = pytest.mark.both_databases


@pytest.fixture
def engine(database_url):
    import backend.api.core.tables  # noqa: F401

    engine = make_engine(database_url)
    create_all(engine)
    yield engine
    engine.dispose()


class Clock:
    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def _admit(book: QuotaBook, policy: TierPolicy, cost: int = 1) -> bool:
    try:
        if not book.try_local(WALLET, cost):
            book.consume(WALLET, policy, cost)
        return True
    except TooManyRequests:
        return False


def test_two_workers_never_spend_more_than_the_quota(engine):
    policy = TierPolicy(name="t", requests_per_minute=10**6, daily_units=1_000)
    clock = Clock()
    a, b = QuotaBook(engine, clock=clock), QuotaBook(engine, clock=clock)
    admitted = 0
    for i in range(1_200):
        admitted += _admit(a if i % 3 else b, policy)
    assert admitted <= 1_000
    # Whatever one worker holds back, it hands back on shutdown; then the other can spend it.
    a.release()
    while _admit(b, policy):
        admitted += 1
    assert admitted == 1_000
    assert b.usage(WALLET, policy).day_used == 1_000


def test_one_worker_refuses_exactly_at_the_limit(engine):
    policy = TierPolicy(name="t", requests_per_minute=7, daily_units=10**6)
    book = QuotaBook(engine, clock=Clock())
    assert [_admit(book, policy) for _ in range(9)] == [True] * 7 + [False, False]


def test_refusal_carries_retry_after_until_the_window_ends(engine):
    clock = Clock(1_700_000_000.0 + 45)
    policy = TierPolicy(name="t", requests_per_minute=1, daily_units=10**6)
    book = QuotaBook(engine, clock=clock)
    book.consume(WALLET, policy, 1)
    with pytest.raises(TooManyRequests) as caught:
        book.consume(WALLET, policy, 1)
    minute_start = int(clock.now // 60 * 60)
    assert caught.value.headers["Retry-After"] == str(minute_start + 60 - int(clock.now))
    clock.now = minute_start + 60  # the next minute
    book.consume(WALLET, policy, 1)


def test_daily_refusal_does_not_count_the_request(engine):
    policy = TierPolicy(name="t", requests_per_minute=100, daily_units=10)
    book = QuotaBook(engine, clock=Clock())
    book.consume(WALLET, policy, 10)
    with pytest.raises(TooManyRequests) as caught:
        book.consume(WALLET, policy, 1)
    assert caught.value.kind == "quota-exceeded"
    usage = book.usage(WALLET, policy)
    assert (usage.minute_used, usage.day_used) == (1, 10)


def test_leases_survive_a_restart_as_spent_units(engine):
    policy = TierPolicy(name="t", requests_per_minute=10**6, daily_units=5_000)
    clock = Clock()
    first = QuotaBook(engine, clock=clock)
    for _ in range(10):
        assert _admit(first, policy)
    first.release()
    second = QuotaBook(engine, clock=clock)
    assert second.usage(WALLET, policy).day_used == 10


def test_old_windows_are_pruned(engine):
    clock = Clock()
    book = QuotaBook(engine, clock=clock)
    book.consume(WALLET, TierPolicy(name="t", requests_per_minute=5, daily_units=5), 1)
    clock.now += 3 * 86_400
    assert book.prune() == 2


def test_logout_in_one_worker_reaches_the_others(engine):
    tokens = TokenService(b"k" * 32, ttl_s=600, issuer="i", audience="a")
    _, claims = tokens.issue(WALLET, 31337)
    here, there = RevocationList(engine, sync_s=0), RevocationList(engine, sync_s=3600)
    there.sync()
    here.revoke(claims.jti, WALLET, claims.expires_at)
    with pytest.raises(Unauthorized):
        here.check(claims)
    there.check(claims)  # not synced yet: the documented window
    assert not there.stale()
    there.sync()
    with pytest.raises(Unauthorized):
        there.check(claims)


def test_pruned_revocations_leave_memory_consistent(engine):
    revocations = RevocationList(engine, sync_s=0)
    old = SessionClaims(WALLET, "old", 0, 10, 1)
    fresh = SessionClaims(WALLET, "fresh", 0, 10**12, 1)
    revocations.revoke(old.jti, WALLET, old.expires_at)
    revocations.revoke(fresh.jti, WALLET, fresh.expires_at)
    assert revocations.prune(now=1_000) == 1
    revocations.check(old)  # its token has expired anyway; the record is gone
    with pytest.raises(Unauthorized):
        revocations.check(fresh)


def test_verified_tokens_are_remembered_until_they_expire():
    import time

    tokens = TokenService(b"k" * 32, ttl_s=600, issuer="i", audience="a")
    token, claims = tokens.issue(WALLET, 1)
    assert tokens.decode(token) == claims
    assert tokens.decode(token) is tokens.decode(token)  # cached
    # As if the token's lifetime had passed since it was verified and remembered:
    tokens._verified[token] = SessionClaims(WALLET, claims.jti, 0, int(time.time()) - 1, 1)
    with pytest.raises(Unauthorized) as caught:
        tokens.decode(token)
    assert caught.value.kind == "token-expired"
