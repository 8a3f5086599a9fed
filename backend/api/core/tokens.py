"""Short-lived session tokens: HS256 JWTs (PyJWT) with a `jti`, revocable by logout until they expire.

A token's signature is checked once; its claims are then remembered (until the token expires), so later
requests pay a dictionary lookup and an expiry comparison. Revocations are rows in the database, mirrored in
memory: a logout applies at once in the worker that served it, and in the other workers at their next sync
(at most `sync_s` later, 1 s by default; 0 syncs on every request).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass

import jwt
from sqlalchemy import Engine, text

from backend.api.core.errors import Unauthorized

__all__ = ["RevocationList", "SessionClaims", "TokenService"]

_ALGORITHM = "HS256"
_MAX_CACHED = 50_000
# Revocations newer than the last sync minus this are read again (clocks of writers may differ a little).
_SYNC_OVERLAP_S = 5.0


@dataclass(frozen=True)
class SessionClaims:
    wallet: str
    jti: str
    issued_at: int
    expires_at: int
    chain_id: int


class TokenService:
    """Issues and checks session tokens."""

    def __init__(self, secret: bytes, *, ttl_s: int, issuer: str, audience: str):
        self._secret = secret
        self.ttl_s = ttl_s
        self._issuer = issuer
        self._audience = audience
        self._verified: OrderedDict[str, SessionClaims] = OrderedDict()
        self._lock = threading.Lock()

    def issue(self, wallet: str, chain_id: int, *, now: float | None = None) -> tuple[str, SessionClaims]:
        issued = int(time.time() if now is None else now)
        claims = SessionClaims(wallet, uuid.uuid4().hex, issued, issued + self.ttl_s, chain_id)
        token = jwt.encode(
            {
                "sub": wallet,
                "jti": claims.jti,
                "iat": claims.issued_at,
                "nbf": claims.issued_at,
                "exp": claims.expires_at,
                "iss": self._issuer,
                "aud": self._audience,
                "chain_id": chain_id,
            },
            self._secret,
            algorithm=_ALGORITHM,
        )
        return token, claims

    def decode(self, token: str) -> SessionClaims:
        """The claims of a valid, unexpired token signed here (revocation is the `RevocationList`'s business)."""
        with self._lock:
            cached = self._verified.get(token)
        if cached is not None:
            if cached.expires_at <= time.time():
                raise Unauthorized("the session token has expired; sign in again", kind="token-expired")
            return cached
        claims = self._verify(token)
        with self._lock:
            self._verified[token] = claims
            while len(self._verified) > _MAX_CACHED:
                self._verified.popitem(last=False)
        return claims

    def _verify(self, token: str) -> SessionClaims:
        try:
            raw = jwt.decode(
                token,
                self._secret,
                algorithms=[_ALGORITHM],  # pinned: never let the token choose (e.g. "none")
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["sub", "jti", "iat", "exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the session token has expired; sign in again", kind="token-expired") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"invalid session token: {exc}", kind="invalid-token") from None
        try:
            return SessionClaims(
                str(raw["sub"]),
                str(raw["jti"]),
                int(raw["iat"]),
                int(raw["exp"]),
                int(raw.get("chain_id", 0)),
            )
        except (TypeError, ValueError):
            raise Unauthorized("invalid session token claims", kind="invalid-token") from None


_INSERT = text(
    "INSERT INTO api_revoked_tokens (jti, wallet, expires_at, revoked_at) VALUES (:jti, :wallet, :exp, :at) "
    "ON CONFLICT (jti) DO NOTHING"
)
_SINCE = text("SELECT jti FROM api_revoked_tokens WHERE revoked_at >= :since")
_ALL = text("SELECT jti FROM api_revoked_tokens")
_PRUNE = text("DELETE FROM api_revoked_tokens WHERE expires_at < :now")


class RevocationList:
    """Revoked token ids: the database is the record, memory the fast path (see the module doc)."""

    def __init__(self, engine: Engine, *, sync_s: float = 1.0):
        self._engine = engine
        self.sync_s = sync_s
        self._revoked: set[str] = set()
        self._synced_at = float("-inf")  # wall clock of the last sync's start
        self._lock = threading.Lock()

    def stale(self) -> bool:
        return time.time() - self._synced_at >= self.sync_s

    def sync(self) -> None:
        """Read revocations made since the last sync (by any worker)."""
        started = time.time()
        with self._engine.connect() as conn:
            since = self._synced_at - _SYNC_OVERLAP_S
            query, params = (_ALL, {}) if since == float("-inf") else (_SINCE, {"since": since})
            rows = conn.execute(query, params).scalars().all()
        with self._lock:
            self._revoked.update(rows)
            self._synced_at = started

    def check(self, claims: SessionClaims) -> None:
        if claims.jti in self._revoked:
            raise Unauthorized("the session token was revoked (logged out)", kind="token-revoked")

    def revoke(self, jti: str, wallet: str, expires_at: float) -> None:
        """End a session now; revoking twice is harmless."""
        with self._lock:
            with self._engine.begin() as conn:
                conn.execute(_INSERT, {"jti": jti, "wallet": wallet, "exp": expires_at, "at": time.time()})
            self._revoked.add(jti)

    def prune(self, now: float | None = None) -> int:
        """Forget revocations of tokens that have expired anyway."""
        now = time.time() if now is None else now
        # Under the lock, so no revocation made here can fall between the read and the swap.
        with self._lock, self._engine.begin() as conn:
            gone = conn.execute(_PRUNE, {"now": now}).rowcount or 0
            # Expired tokens fail on expiry alone: memory keeps only what the table still holds.
            self._revoked = set(conn.execute(_ALL).scalars().all())
        return gone
