"""Sign-In with Ethereum (EIP-4361, the `siwe` package) with server-side, single-use nonces that expire.

A login is accepted only if the message names this service's domain (and URI, if configured) and chain, is
within its validity window, is signed by the address it names, and carries a nonce this service issued, has not
seen used and that has not expired. The nonce is deleted in the same statement that checks it, so two
concurrent logins with one nonce cannot both succeed.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

from sqlalchemy import CursorResult, delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from backend.api.core.errors import BadRequest, ServiceUnavailable, Unauthorized
from backend.api.core.tables import IssuedNonce
from backend.db import session_scope

with warnings.catch_warnings():
    # siwe's bundled grammars redefine RFC 5234 core rules; abnf warns about it on import, harmlessly.
    warnings.filterwarnings("ignore", message=".*redefines.*")
    import siwe

__all__ = ["IssuedChallenge", "SiweVerifier"]

# Clock skew tolerated between a wallet and this service for `Issued At`.
_SKEW = timedelta(minutes=5)
# Outstanding nonces above which issuing more is refused (an unauthenticated caller must not fill the table).
_MAX_OUTSTANDING = 100_000


@dataclass(frozen=True)
class IssuedChallenge:
    nonce: str
    expires_at: float
    domain: str
    uri: str | None
    chain_id: int
    statement: str


class SiweVerifier:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        domain: str,
        uri: str | None,
        statement: str,
        nonce_ttl_s: float,
    ):
        self._sessions = sessions
        self.domain = domain
        self.uri = uri
        self.statement = statement
        self.nonce_ttl_s = nonce_ttl_s

    def issue_nonce(self, chain_id: int, *, now: float | None = None) -> IssuedChallenge:
        now = time.time() if now is None else now
        nonce = siwe.generate_nonce()
        with session_scope(self._sessions) as session:
            session.execute(delete(IssuedNonce).where(IssuedNonce.expires_at <= now))
            if (session.scalar(select(func.count()).select_from(IssuedNonce)) or 0) >= _MAX_OUTSTANDING:
                raise ServiceUnavailable("too many sign-ins in progress; retry shortly", kind="busy")
            session.add(IssuedNonce(nonce=nonce, expires_at=now + self.nonce_ttl_s))
        return IssuedChallenge(nonce, now + self.nonce_ttl_s, self.domain, self.uri, chain_id, self.statement)

    def verify(self, message: str, signature: str, *, chain_id: int, now: float | None = None) -> str:
        """The checksum address that signed `message`; raises `Unauthorized` for every way a login can be wrong."""
        try:
            parsed = siwe.SiweMessage.from_message(message)
        except Exception as exc:  # the parser raises assorted errors (ValueError, ValidationError, ...)
            raise BadRequest(
                f"not an EIP-4361 message: {type(exc).__name__}", kind="siwe-malformed"
            ) from None
        moment = datetime.fromtimestamp(time.time() if now is None else now, tz=UTC)
        if parsed.domain != self.domain:
            raise Unauthorized(
                f"the message is for domain {parsed.domain!r}, not {self.domain!r}", kind="siwe-domain"
            )
        if self.uri is not None and str(parsed.uri) != self.uri:
            raise Unauthorized(f"the message is for URI {parsed.uri!r}, not {self.uri!r}", kind="siwe-uri")
        if parsed.chain_id != chain_id:
            raise Unauthorized(
                f"the message is for chain {parsed.chain_id}, not {chain_id}", kind="siwe-chain"
            )
        issued = datetime.fromisoformat(str(parsed.issued_at).replace("Z", "+00:00"))
        if issued > moment + _SKEW:
            raise Unauthorized("the message is issued in the future", kind="siwe-time")
        if issued < moment - _SKEW:
            # The documented skew works both ways: an old signed message is not a login someone can replay later.
            raise Unauthorized(
                f"the message was issued more than {int(_SKEW.total_seconds() // 60)} minutes ago: sign a fresh one",
                kind="siwe-time",
            )
        try:
            parsed.verify(signature, domain=self.domain, timestamp=moment)
        except siwe.ExpiredMessage:
            raise Unauthorized("the sign-in message has expired", kind="siwe-expired") from None
        except siwe.NotYetValidMessage:
            raise Unauthorized("the sign-in message is not valid yet", kind="siwe-time") from None
        except siwe.VerificationError:
            raise Unauthorized(
                f"the signature is not {parsed.address}'s over this message", kind="siwe-signature"
            ) from None
        except Exception:  # eth_keys' BadSignature and friends: bytes that are no signature at all
            raise Unauthorized("the signature is malformed", kind="siwe-signature") from None
        self._consume(parsed.nonce, moment.timestamp())
        return str(parsed.address)

    def _consume(self, nonce: str, now: float) -> None:
        with session_scope(self._sessions) as session:
            result = session.execute(
                delete(IssuedNonce).where(IssuedNonce.nonce == nonce, IssuedNonce.expires_at > now)
            )
            deleted = cast(CursorResult, result).rowcount
        if deleted != 1:
            raise Unauthorized("the nonce is unknown, expired or already used", kind="siwe-nonce")
