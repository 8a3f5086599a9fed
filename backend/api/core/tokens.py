"""Short-lived session tokens: HS256 JWTs (PyJWT) with a `jti`, revocable by logout until they expire."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import jwt
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from backend.api.core.errors import Unauthorized
from backend.api.core.tables import RevokedToken
from backend.db import session_scope

__all__ = ["SessionClaims", "TokenService"]

_ALGORITHM = "HS256"


@dataclass(frozen=True)
class SessionClaims:
    wallet: str
    jti: str
    issued_at: int
    expires_at: int
    chain_id: int


class TokenService:
    """Issues and checks session tokens; revocations live in the database so every worker sees them."""

    def __init__(
        self, sessions: sessionmaker[Session], secret: bytes, *, ttl_s: int, issuer: str, audience: str
    ):
        self._sessions = sessions
        self._secret = secret
        self.ttl_s = ttl_s
        self._issuer = issuer
        self._audience = audience

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
        """The claims of a valid, unexpired token signed here (revocation is checked by `check_revoked`)."""
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

    def check_revoked(self, session: Session, claims: SessionClaims) -> None:
        if session.get(RevokedToken, claims.jti) is not None:
            raise Unauthorized("the session token was revoked (logged out)", kind="token-revoked")

    def revoke(self, jti: str, wallet: str, expires_at: float) -> None:
        """End a session now; revoking twice is harmless."""
        try:
            with session_scope(self._sessions) as session:
                session.add(RevokedToken(jti=jti, wallet=wallet, expires_at=expires_at))
        except IntegrityError:
            pass  # already revoked

    def is_revoked(self, jti: str) -> bool:
        with session_scope(self._sessions) as session:
            return session.scalar(select(RevokedToken.jti).where(RevokedToken.jti == jti)) is not None

    def prune(self, now: float | None = None) -> int:
        """Forget revocations of tokens that have expired anyway."""
        now = time.time() if now is None else now
        with session_scope(self._sessions) as session:
            return session.execute(delete(RevokedToken).where(RevokedToken.expires_at < now)).rowcount or 0
