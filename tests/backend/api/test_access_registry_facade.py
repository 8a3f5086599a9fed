"""The AccessRegistry facade against anvil: reads, grants, revocations, relayed terms acceptance."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_utils import keccak

from backend.chain.access_registry import AccessRegistry, decision_ref
from backend.chain.errors import revert_class

pytestmark = pytest.mark.chain

TERMS = keccak(text="facade terms")


@pytest.fixture
def registry(chain_client):
    return AccessRegistry(chain_client)


def test_grant_read_revoke(registry, dev_accounts, chain_client):
    admin, user = dev_accounts[0], dev_accounts[7]
    assert registry.max_tier() == 3
    assert registry.access_of(user.address).tier == 0
    expires = chain_client.timestamp() + 3600
    registry.set_tier(admin, user.address, 2, expires, decision_ref("app-1"))
    grant = registry.access_of(user.address.lower())
    assert (grant.account, grant.tier, grant.expires_at, grant.grantor) == (user.address, 2, expires, False)
    registry.revoke(admin, user.address, decision_ref("app-1"))
    assert registry.access_of(user.address).tier == 0
    assert registry.access_of(admin.address).grantor is True


def test_revert_surfaces_as_named_error(registry, dev_accounts, chain_client):
    with pytest.raises(revert_class("AccessRegistry", "InvalidTier")):
        registry.set_tier(
            dev_accounts[0], dev_accounts[7].address, 4, chain_client.timestamp() + 60, b"\0" * 32
        )
    with pytest.raises(revert_class("AccessRegistry", "AccessControlUnauthorizedAccount")):
        registry.revoke(dev_accounts[7], dev_accounts[0].address, b"\0" * 32)


def test_signed_acceptance_is_relayed(registry, dev_accounts, chain_client):
    admin = dev_accounts[0]
    user = Account.from_key(keccak(text="facade user"))  # holds no ether
    assert registry.terms().published is False
    registry.publish_terms(admin, TERMS, "ipfs://terms")
    assert registry.terms().terms_hash == TERMS
    assert registry.terms().version == 1
    deadline = chain_client.timestamp() + 600
    payload = registry.acceptance_typed_data(user.address, TERMS, deadline)
    assert payload["message"]["nonce"] == 0
    signature = registry.sign_acceptance(user, TERMS, deadline)
    registry.accept_terms_for(admin, user.address, TERMS, deadline, signature)
    assert registry.access_of(user.address).accepted_current_terms is True
    with pytest.raises(revert_class("AccessRegistry", "InvalidSignature")):
        registry.accept_terms_for(admin, user.address, TERMS, deadline, signature)
