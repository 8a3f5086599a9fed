"""The API's off-chain state: SIWE nonces, revoked tokens, usage counters, the audit log, access applications and
the decisions taken on them. SQLite by default, PostgreSQL by URL (`backend.db`)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from backend.db import Base

__all__ = ["AccessApplication", "AccessDecision", "AuditEntry", "IssuedNonce", "RevokedToken", "UsageCounter"]


class IssuedNonce(Base):
    """A SIWE nonce handed out and not yet used; deleted when a login consumes it (so it cannot be replayed)."""

    __tablename__ = "api_nonces"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[float] = mapped_column(Float, index=True)


class RevokedToken(Base):
    """A session token ended by logout before its expiry; kept until it would have expired anyway."""

    __tablename__ = "api_revoked_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    wallet: Mapped[str] = mapped_column(String(42))
    expires_at: Mapped[float] = mapped_column(Float, index=True)
    revoked_at: Mapped[float] = mapped_column(Float, index=True)


class UsageCounter(Base):
    """Requests (window 'minute') or cost units (window 'day') a wallet used in one window."""

    __tablename__ = "api_usage"

    wallet: Mapped[str] = mapped_column(String(42), primary_key=True)
    window: Mapped[str] = mapped_column(String(8), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    used: Mapped[int] = mapped_column(BigInteger, default=0)


class AuditEntry(Base):
    """One request: who, which route and scope, what was decided, what it cost, how it ended."""

    __tablename__ = "api_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Float, index=True)
    wallet: Mapped[str | None] = mapped_column(String(42), index=True)
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(512))
    scope: Mapped[str | None] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(String(256))
    cost: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[int] = mapped_column(Integer)
    tier: Mapped[int | None] = mapped_column(Integer)


class AccessApplication(Base):
    """A use-case application for a tier: submitted by a wallet, reviewed and decided by a grantor."""

    __tablename__ = "api_access_applications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    wallet: Mapped[str] = mapped_column(String(42), index=True)
    requested_tier: Mapped[int] = mapped_column(Integer)
    use_case: Mapped[str] = mapped_column(Text)
    contact: Mapped[str | None] = mapped_column(String(256))
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class AccessDecision(Base):
    """Every review step and tier decision, with the grantor who took it and the transaction that applied it."""

    __tablename__ = "api_access_decisions"
    __table_args__ = (Index("ix_api_access_decisions_wallet_at", "wallet", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    application_id: Mapped[int | None] = mapped_column(ForeignKey("api_access_applications.id"))
    wallet: Mapped[str] = mapped_column(String(42))
    reviewer: Mapped[str] = mapped_column(String(42))
    action: Mapped[str] = mapped_column(String(16))
    tier: Mapped[int | None] = mapped_column(Integer)
    expires_at: Mapped[int | None] = mapped_column(BigInteger)
    note: Mapped[str | None] = mapped_column(Text)
    tx_hash: Mapped[str | None] = mapped_column(String(66))
    on_chain: Mapped[bool] = mapped_column(Boolean, default=False)
    at: Mapped[float] = mapped_column(Float)
