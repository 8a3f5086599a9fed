"""What the API tests share: a hand-moved clock, SIWE messages signed by local keys, and a scenario helper."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from fastapi.testclient import TestClient

from backend.chain.access_registry import AccessRegistry, decision_ref

DOMAIN = "testserver"
CHAIN_ID = 31337
TERMS = keccak(text="trustmarket API terms, test edition")


class FakeClock:
    """A monotonic clock the test moves by hand (the tier cache's TTL)."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def siwe_message(
    address: str,
    nonce: str,
    *,
    domain: str = DOMAIN,
    chain_id: int = CHAIN_ID,
    issued_at: datetime | None = None,
    expiration: datetime | None = None,
) -> str:
    import siwe

    issued = issued_at or datetime.now(tz=UTC)
    fields = {
        "domain": domain,
        "address": address,
        "uri": f"http://{domain}",
        "version": "1",
        "chain_id": chain_id,
        "issued_at": issued.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "nonce": nonce,
        "statement": "Sign in to trustmarket.",
    }
    if expiration is not None:
        fields["expiration_time"] = expiration.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return siwe.SiweMessage(**fields).prepare_message()


def sign_text(account: LocalAccount, text: str) -> str:
    return Account.sign_message(encode_defunct(text=text), account.key).signature.to_0x_hex()


@dataclass
class Api:
    """A test client plus the chain-side helpers a scenario needs."""

    client: TestClient
    services: object
    registry: AccessRegistry
    admin: LocalAccount
    clock: FakeClock

    def nonce(self) -> str:
        reply = self.client.post("/v1/auth/nonce")
        assert reply.status_code == 200, reply.text
        return reply.json()["nonce"]

    def login(self, account: LocalAccount) -> dict[str, str]:
        """Sign in as `account`; the Authorization header to use."""
        message = siwe_message(account.address, self.nonce())
        reply = self.client.post(
            "/v1/auth/login", json={"message": message, "signature": sign_text(account, message)}
        )
        assert reply.status_code == 200, reply.text
        return {"Authorization": f"Bearer {reply.json()['access_token']}"}

    def grant(self, account: LocalAccount, tier: int, seconds: int = 86_400) -> None:
        expires = self.registry.client.timestamp() + seconds
        self.registry.set_tier(self.admin, account.address, tier, expires, decision_ref("test"))
        self.services.access.invalidate(account.address)

    def publish_terms(self) -> None:
        if self.registry.terms().terms_hash != TERMS:
            self.registry.publish_terms(self.admin, TERMS, "ipfs://terms")
            self.services.forget("terms")

    def accept_terms(self, account: LocalAccount) -> None:
        self.publish_terms()
        deadline = self.registry.client.timestamp() + 600
        signature = self.registry.sign_acceptance(account, TERMS, deadline)
        self.registry.accept_terms_for(self.admin, account.address, TERMS, deadline, signature)
        self.services.access.invalidate(account.address)

    def member(self, name: str, tier: int = 1, terms: bool = True) -> tuple[LocalAccount, dict[str, str]]:
        """A fresh wallet with `tier` (and the terms accepted), signed in."""
        account = wallet(name)
        if tier:
            self.grant(account, tier)
        if terms:
            self.accept_terms(account)
        return account, self.login(account)


def wallet(name: str) -> LocalAccount:
    return Account.from_key(keccak(text=f"api-test-wallet:{name}"))


def create_market_project(market, store, dev_accounts, *, on_chain=None, **publish) -> tuple[int, Any]:
    """A project published with `publish_project(store, **publish)` and created on chain by dev account 10 (one
    round, three trainers at most, no challenge window; `on_chain` replaces parameters); its id and manifest."""
    from dataclasses import replace

    from backend.marketplace.publish import publish_project

    published = publish_project(store, rounds=1, rule="fedavg", **publish)
    owner, aggregator, arbiter = dev_accounts[10], dev_accounts[11], dev_accounts[12]
    params = published.project_params(
        rounds=1, round_duration=3600, reveal_window=600, aggregation_window=3600, min_stake=10**16, max_trainers=3,
        aggregator=aggregator.address, arbiter=arbiter.address, challenge_window=0, challenge_bond=0,
    )  # fmt: skip
    params = replace(params, **(on_chain or {}))
    return market.create_project(owner, params, value=10**18), published.manifest_body
