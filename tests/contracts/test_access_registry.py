"""AccessRegistry: tiers with expiry set by grantors, terms accepted by relayed EIP-712 signatures."""

from __future__ import annotations

import ape
import pytest
from eth_account import Account
from eth_utils import keccak

pytestmark = pytest.mark.chain

MAX_TIER = 3
TERMS = keccak(text="trustmarket terms v1")
TERMS_2 = keccak(text="trustmarket terms v2")
REF = keccak(text="application-1")
GRANTOR_ROLE = keccak(text="GRANTOR_ROLE")


@pytest.fixture
def admin(accounts):
    return accounts[0]


@pytest.fixture
def stranger(accounts):
    return accounts[5]


@pytest.fixture
def registry(project, admin):
    return project.AccessRegistry.deploy(admin, MAX_TIER, sender=admin)


@pytest.fixture
def user():
    """A wallet with no ether: it only signs, the relayer pays."""
    return Account.from_key(keccak(text="access-registry-test-user"))


def _future(chain, seconds: int = 3600) -> int:
    return chain.pending_timestamp + seconds


def _sign_acceptance(registry, signer, terms_hash: bytes, deadline: int, nonce: int | None = None) -> bytes:
    if nonce is None:
        nonce = registry.nonces(signer.address)
    signed = Account.sign_typed_data(
        signer.key,
        domain_data={
            "name": "trustmarket AccessRegistry",
            "version": "1",
            "chainId": ape.chain.chain_id,
            "verifyingContract": registry.address,
        },
        message_types={
            "AcceptTerms": [
                {"name": "account", "type": "address"},
                {"name": "termsHash", "type": "bytes32"},
                {"name": "nonce", "type": "uint256"},
                {"name": "deadline", "type": "uint256"},
            ]
        },
        message_data={
            "account": signer.address,
            "termsHash": terms_hash,
            "nonce": nonce,
            "deadline": deadline,
        },
    )
    return bytes(signed.signature)


# --- deployment ---


def test_deploy_grants_admin_all_roles(registry, admin):
    assert registry.maxTier() == MAX_TIER
    assert registry.hasRole(GRANTOR_ROLE, admin)
    assert registry.hasRole(keccak(text="TERMS_ADMIN_ROLE"), admin)
    assert registry.hasRole(b"\x00" * 32, admin)
    assert registry.accessOf(admin).grantor is True


def test_deploy_rejects_zero_admin_and_zero_max_tier(project, admin):
    with ape.reverts(project.AccessRegistry.ZeroAddress):
        project.AccessRegistry.deploy("0x" + "00" * 20, MAX_TIER, sender=admin)
    with ape.reverts(project.AccessRegistry.InvalidTier):
        project.AccessRegistry.deploy(admin, 0, sender=admin)


# --- tiers ---


def test_set_tier_then_read_it_back(registry, admin, stranger, chain):
    expires = _future(chain)
    tx = registry.setTier(stranger, 2, expires, REF, sender=admin)
    assert registry.accessOf(stranger) == (2, expires, False, False)
    events = tx.decode_logs(registry.TierGranted)
    assert len(events) == 1
    assert events[0].account == stranger.address
    assert events[0].tier == 2
    assert events[0].decisionRef == REF
    assert events[0].grantor == admin.address


def test_grant_expires_by_itself(registry, admin, stranger, chain):
    expires = _future(chain, 100)
    registry.setTier(stranger, 1, expires, REF, sender=admin)
    assert registry.accessOf(stranger).tier == 1
    chain.pending_timestamp = expires + 1
    chain.mine()
    access = registry.accessOf(stranger)
    assert access.tier == 0
    assert access.expiresAt == expires


def test_revoke_removes_access_at_once(registry, admin, stranger, chain):
    registry.setTier(stranger, 3, _future(chain), REF, sender=admin)
    tx = registry.revoke(stranger, REF, sender=admin)
    assert registry.accessOf(stranger).tier == 0
    assert tx.decode_logs(registry.TierRevoked)[0].account == stranger.address


def test_revoke_without_grant_reverts(registry, admin, stranger):
    with ape.reverts(registry.NoGrant):
        registry.revoke(stranger, REF, sender=admin)


@pytest.mark.parametrize("tier", [0, MAX_TIER + 1, 255])
def test_set_tier_out_of_range_reverts(registry, admin, stranger, chain, tier):
    with ape.reverts(registry.InvalidTier):
        registry.setTier(stranger, tier, _future(chain), REF, sender=admin)


def test_set_tier_with_past_expiry_reverts(registry, admin, stranger, chain):
    with ape.reverts(registry.ExpiryNotInFuture):
        registry.setTier(stranger, 1, chain.pending_timestamp - 1, REF, sender=admin)


def test_set_tier_for_zero_address_reverts(registry, admin, chain):
    with ape.reverts(registry.ZeroAddress):
        registry.setTier("0x" + "00" * 20, 1, _future(chain), REF, sender=admin)


def test_only_grantors_set_and_revoke(registry, admin, stranger, accounts, chain):
    with ape.reverts(registry.AccessControlUnauthorizedAccount):
        registry.setTier(stranger, 1, _future(chain), REF, sender=stranger)
    registry.setTier(stranger, 1, _future(chain), REF, sender=admin)
    with ape.reverts(registry.AccessControlUnauthorizedAccount):
        registry.revoke(stranger, REF, sender=stranger)
    # A second grantor, appointed by the admin, may act.
    registry.grantRole(GRANTOR_ROLE, accounts[6], sender=admin)
    registry.revoke(stranger, REF, sender=accounts[6])
    assert registry.accessOf(stranger).tier == 0
    assert registry.accessOf(accounts[6]).grantor is True


# --- terms ---


def test_publish_terms_bumps_version(registry, admin):
    tx = registry.publishTerms(TERMS, "ipfs://terms-v1", sender=admin)
    assert registry.currentTermsHash() == TERMS
    assert registry.termsVersion() == 1
    event = tx.decode_logs(registry.TermsPublished)[0]
    assert (event.version, event.termsHash, event.uri) == (1, TERMS, "ipfs://terms-v1")


def test_publish_terms_failures(registry, admin, stranger):
    with ape.reverts(registry.AccessControlUnauthorizedAccount):
        registry.publishTerms(TERMS, "", sender=stranger)
    with ape.reverts(registry.EmptyTerms):
        registry.publishTerms(b"\x00" * 32, "", sender=admin)
    registry.publishTerms(TERMS, "", sender=admin)
    with ape.reverts(registry.TermsUnchanged):
        registry.publishTerms(TERMS, "", sender=admin)


def test_relayed_acceptance_is_recorded(registry, admin, stranger, user, chain):
    registry.publishTerms(TERMS, "", sender=admin)
    deadline = _future(chain)
    signature = _sign_acceptance(registry, user, TERMS, deadline)
    # The stranger relays and pays; the user never holds ether.
    tx = registry.acceptTermsFor(user.address, TERMS, deadline, signature, sender=stranger)
    assert registry.accessOf(user.address).acceptedCurrentTerms is True
    assert registry.acceptedTermsOf(user.address) == TERMS
    assert registry.nonces(user.address) == 1
    event = tx.decode_logs(registry.TermsAccepted)[0]
    assert (event.account, event.termsHash, event.version) == (user.address, TERMS, 1)


def test_new_terms_void_earlier_acceptance(registry, admin, stranger, user, chain):
    registry.publishTerms(TERMS, "", sender=admin)
    deadline = _future(chain)
    registry.acceptTermsFor(
        user.address, TERMS, deadline, _sign_acceptance(registry, user, TERMS, deadline), sender=stranger
    )
    registry.publishTerms(TERMS_2, "", sender=admin)
    assert registry.accessOf(user.address).acceptedCurrentTerms is False
    registry.acceptTermsFor(
        user.address, TERMS_2, deadline, _sign_acceptance(registry, user, TERMS_2, deadline), sender=stranger
    )
    assert registry.accessOf(user.address).acceptedCurrentTerms is True


def test_replayed_acceptance_reverts(registry, admin, stranger, user, chain):
    registry.publishTerms(TERMS, "", sender=admin)
    deadline = _future(chain)
    signature = _sign_acceptance(registry, user, TERMS, deadline)
    registry.acceptTermsFor(user.address, TERMS, deadline, signature, sender=stranger)
    # The nonce moved on, so the same signature no longer matches the digest.
    with ape.reverts(registry.InvalidSignature):
        registry.acceptTermsFor(user.address, TERMS, deadline, signature, sender=stranger)


def test_acceptance_of_stale_or_missing_terms_reverts(registry, admin, stranger, user, chain):
    deadline = _future(chain)
    with ape.reverts(registry.NotCurrentTerms):
        registry.acceptTermsFor(
            user.address, TERMS, deadline, _sign_acceptance(registry, user, TERMS, deadline), sender=stranger
        )
    registry.publishTerms(TERMS_2, "", sender=admin)
    with ape.reverts(registry.NotCurrentTerms):
        registry.acceptTermsFor(
            user.address, TERMS, deadline, _sign_acceptance(registry, user, TERMS, deadline), sender=stranger
        )


def test_expired_acceptance_reverts(registry, admin, stranger, user, chain):
    registry.publishTerms(TERMS, "", sender=admin)
    deadline = chain.pending_timestamp - 1
    with ape.reverts(registry.SignatureExpired):
        registry.acceptTermsFor(
            user.address, TERMS, deadline, _sign_acceptance(registry, user, TERMS, deadline), sender=stranger
        )


def test_forged_acceptance_reverts(registry, admin, stranger, user, chain):
    registry.publishTerms(TERMS, "", sender=admin)
    deadline = _future(chain)
    forger = Account.from_key(keccak(text="someone else"))
    forged = _sign_acceptance(registry, forger, TERMS, deadline, nonce=0)
    with ape.reverts(registry.InvalidSignature):
        registry.acceptTermsFor(user.address, TERMS, deadline, forged, sender=stranger)
    # A signature over a different deadline does not carry over either.
    other = _sign_acceptance(registry, user, TERMS, deadline + 1)
    with ape.reverts(registry.InvalidSignature):
        registry.acceptTermsFor(user.address, TERMS, deadline, other, sender=stranger)
    assert registry.accessOf(user.address).acceptedCurrentTerms is False


def test_malformed_signature_reverts(registry, admin, stranger, user, chain):
    registry.publishTerms(TERMS, "", sender=admin)
    with ape.reverts(registry.InvalidSignature):
        registry.acceptTermsFor(user.address, TERMS, _future(chain), b"\x01" * 10, sender=stranger)


def test_acceptance_for_zero_address_reverts(registry, admin, stranger, chain):
    registry.publishTerms(TERMS, "", sender=admin)
    with ape.reverts(registry.ZeroAddress):
        registry.acceptTermsFor("0x" + "00" * 20, TERMS, _future(chain), b"", sender=stranger)
