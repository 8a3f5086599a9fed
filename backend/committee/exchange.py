"""Where a committee shares its signatures, one per verifier and round result: a folder everyone mounts, or the
mailbox of a trustless gateway (`trustmarket storage serve`, `/exchange/`), so that verifiers on separate
machines need share nothing but the gateway.

Verifiers drop their signatures here and whoever sees a quorum aggregates them; the chain, not the exchange,
decides what counts, so an unreadable or foreign entry is logged and skipped.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Protocol

import httpx
from web3 import Web3

from backend.chain.verifier_committee import CommitteeError
from backend.committee.attestation import VerifierSignature

__all__ = ["Exchange", "ExchangeUnavailable", "GatewayExchange", "SignatureExchange", "open_exchange"]

log = logging.getLogger(__name__)


class ExchangeUnavailable(CommitteeError):
    """The gateway holding the committee's signatures cannot be reached or refused a signature."""


class SignatureExchange:
    """A folder verifiers share: `<root>/<market>/<project>/<round>/<verifier>.json`, one signature per file."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _folder(self, market: str, project_id: int, round_: int) -> Path:
        return self.root / Web3.to_checksum_address(market) / str(project_id) / str(round_)

    def put(self, signature: VerifierSignature) -> Path:
        folder = self._folder(signature.market, signature.project_id, signature.round)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{signature.verifier}.json"
        # Write then rename, so a reader never sees half a file.
        partial = path.with_suffix(".json.partial")
        partial.write_text(json.dumps(signature.to_json(), indent=2, sort_keys=True))
        partial.replace(path)
        return path

    def collect(self, market: str, project_id: int, round_: int) -> list[VerifierSignature]:
        """Every readable signature for the round; unreadable files are logged and skipped (the chain decides)."""
        signatures = []
        for path in sorted(self._folder(market, project_id, round_).glob("*.json")):
            try:
                signatures.append(VerifierSignature.from_json(json.loads(path.read_text())))
            except (OSError, ValueError) as exc:
                log.warning("skipping signature file %s: %s", path, exc)
        return signatures


class Exchange(Protocol):
    def put(self, signature: VerifierSignature) -> object: ...

    def collect(self, market: str, project_id: int, round_: int) -> list[VerifierSignature]: ...


class GatewayExchange:
    """The mailbox of a trustless gateway: `PUT/GET <url>/<market>/<project>/<round>[/<verifier>]`."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0):
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(timeout=timeout, headers=headers)

    def _folder(self, market: str, project_id: int, round_: int) -> str:
        return f"{self.url}/{Web3.to_checksum_address(market)}/{project_id}/{round_}"

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise ExchangeUnavailable(f"the signature exchange at {self.url} is unreachable: {exc}") from exc
        if response.status_code >= 400:
            raise ExchangeUnavailable(
                f"the signature exchange at {self.url} answered HTTP {response.status_code}: {response.text[:200]}"
            )
        return response

    def put(self, signature: VerifierSignature) -> str:
        url = f"{self._folder(signature.market, signature.project_id, signature.round)}/{signature.verifier}"
        self._send("PUT", url, content=json.dumps(signature.to_json(), sort_keys=True).encode())
        return url

    def collect(self, market: str, project_id: int, round_: int) -> list[VerifierSignature]:
        notes = self._send("GET", self._folder(market, project_id, round_)).json()
        signatures = []
        for name, note in sorted(notes.items() if isinstance(notes, dict) else []):
            try:
                signatures.append(VerifierSignature.from_json(note))
            except (TypeError, ValueError, KeyError) as exc:
                log.warning("skipping signature %s from %s: %s", name, self.url, exc)
        return signatures


def open_exchange(where: str, token: str | None = None) -> SignatureExchange | GatewayExchange:
    """A folder path, or a gateway's mailbox URL (http://host:port/exchange)."""
    if where.startswith(("http://", "https://")):
        return GatewayExchange(where, token)
    return SignatureExchange(Path(where))
