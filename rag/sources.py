"""The orchestrator's view of the sources: the on-chain directory (cached) and verified calls to their nodes.

`SourceDirectory` reads endpoints, operators, commitments and Beta posteriors from the SourceRegistry and reloads
them when an event that changes one of them shows up on chain (feedback, a registration, `CommitmentUpdated`,
`EndpointUpdated`, an exit or a slash). `fetch_retrieval` asks one node and
accepts its answer only if it is bound to this query: the signature recovers to the operator on chain, over this
query hash (query text, fresh nonce, epoch, k), this epoch and exactly the documents returned, each of which must
hash as claimed and prove membership in the source's committed corpus.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, replace

import httpx
from pydantic import ValidationError

from backend.chain.source_registry import SCALE, FeedbackBatch, SourceRegistry, SourceStatus
from rag.corpus import Document, verify_proof
from rag.errors import SignatureError, SourceUnavailable
from rag.node import RetrievedDocument, RetrieveResponse
from rag.reliability import Posterior
from rag.signing import SigningDomain, query_hash, recover_signer

__all__ = [
    "SourceDirectory",
    "SourceView",
    "fetch_answer",
    "fetch_retrieval",
    "http_client",
    "verify_response",
    "verify_retrieval",
]


@dataclass(frozen=True)
class SourceView:
    source_id: int
    endpoint: str
    operator: str
    commitment: bytes
    posterior: Posterior
    status: SourceStatus


class SourceDirectory:
    """Active sources and their reliabilities, refreshed on chain events rather than read per query."""

    def __init__(self, registry: SourceRegistry):
        self.registry = registry
        self.domain = SigningDomain(registry.client.chain_id, registry.address)
        self.sources: dict[int, SourceView] = {}
        self.epoch = 0
        self._block = -1
        self.refreshes = 0

    def refresh(self, records_only: bool = False) -> None:
        """Reload the posteriors (one call), and unless `records_only` every source's registration too."""
        block = self.registry.client.block_number()
        reliabilities = self.registry.reliabilities(block)
        known = {sid: view for sid, view in self.sources.items() if sid in reliabilities}
        if not records_only or len(known) != len(reliabilities):
            infos = {i: self.registry.source(i) for i in reliabilities}
            known = {sid: SourceView(sid, i.endpoint, i.operator, i.commitment, Posterior(1, 1), i.status)
                     for sid, i in infos.items()}  # fmt: skip
        self.sources = {
            sid: replace(
                known[sid], posterior=Posterior(rel.alpha / SCALE, rel.beta / SCALE), status=rel.status
            )
            for sid, rel in reliabilities.items()
        }
        self.epoch = self.registry.current_epoch(block)
        self._block = block
        self.refreshes += 1

    def maybe_refresh(self) -> bool:
        """Reload if anything the cache holds changed on chain since the last load (a registration, feedback, a
        new commitment or endpoint, an exit, a slash); True if it did. The epoch follows the clock either way."""
        if self._block < 0:
            self.refresh()
            return True
        block = self.registry.client.block_number()
        if block == self._block:
            return False  # no new block, nothing can have changed
        changes = self.registry.changes_since(self._block + 1, block)
        if changes:
            # Feedback moves only the records; anything else may move endpoints, operators or commitments.
            self.refresh(records_only=set(changes) == {"FeedbackApplied"})
            return True
        self.epoch = self.registry.current_epoch(block)
        self._block = block
        return False

    def on_applied(self, _batch: FeedbackBatch) -> None:
        """Hook for the feedback queue: our own batch just landed (it moved records only)."""
        self.refresh(records_only=True)

    def active(self) -> dict[int, SourceView]:
        return {sid: s for sid, s in self.sources.items() if s.status is SourceStatus.ACTIVE}


def verify_retrieval(
    source: SourceView, domain: SigningDomain, payload: object, query: str, nonce: bytes, epoch: int, k: int
) -> list[RetrievedDocument]:
    """The documents of a node's answer, or `SignatureError` saying why it cannot be attributed to this query."""
    return list(verify_response(source, domain, payload, query, nonce, epoch, k).documents)


def verify_response(
    source: SourceView, domain: SigningDomain, payload: object, query: str, nonce: bytes, epoch: int, k: int
) -> RetrieveResponse:
    """A node's whole signed answer (documents and signature: evidence anyone can check), once verified."""
    try:
        response = RetrieveResponse.model_validate(payload)
    except ValidationError as exc:
        raise SignatureError(
            f"source {source.source_id}: malformed answer ({exc.error_count()} errors)"
        ) from None
    sid = source.source_id
    if response.source_id != sid:
        raise SignatureError(f"source {sid}: answer claims to come from source {response.source_id}")
    if response.epoch != epoch:
        raise SignatureError(f"source {sid}: answer is for epoch {response.epoch}, asked for {epoch}")
    expected = query_hash(query, nonce, epoch, k)
    if response.query_hash.lower() != "0x" + expected.hex():
        raise SignatureError(f"source {sid}: answer is for another query (replayed or misrouted)")
    if len(response.documents) > k:
        raise SignatureError(f"source {sid}: {len(response.documents)} documents for k={k}")
    hashes = []
    for doc in response.documents:
        digest = Document(doc.doc_id, doc.title, doc.text).hash
        if doc.hash.lower() != "0x" + digest.hex():
            raise SignatureError(f"source {sid}: document {doc.doc_id!r} does not match its hash")
        try:
            proof = [bytes.fromhex(p.removeprefix("0x")) for p in doc.proof]
        except ValueError:
            raise SignatureError(f"source {sid}: malformed proof for {doc.doc_id!r}") from None
        if not verify_proof(digest, proof, source.commitment):
            raise SignatureError(f"source {sid}: document {doc.doc_id!r} is not in its committed corpus")
        hashes.append(digest)
    try:
        signature = bytes.fromhex(response.signature.removeprefix("0x"))
    except ValueError:
        raise SignatureError(f"source {sid}: signature is not hex") from None
    signer = recover_signer(domain, sid, expected, hashes, epoch, signature)
    if signer.lower() != source.operator.lower():
        raise SignatureError(f"source {sid}: signed by {signer}, not by its operator {source.operator}")
    return response


async def fetch_answer(
    source: SourceView,
    query: str,
    nonce: bytes,
    epoch: int,
    k: int,
    *,
    timeout: float,
    client: httpx.AsyncClient,
) -> object:
    """One node's answer as it sent it (not verified yet); `SourceUnavailable` if it is down, slow or errs."""
    body = {"query": query, "k": k, "nonce": "0x" + nonce.hex(), "epoch": epoch}
    try:
        # wait_for also bounds in-process transports, which ignore httpx's network timeouts.
        reply = await asyncio.wait_for(
            client.post(source.endpoint.rstrip("/") + "/retrieve", json=body, timeout=timeout), timeout
        )
    except (TimeoutError, httpx.TimeoutException):
        raise SourceUnavailable(f"source {source.source_id}: no answer within {timeout:.1f}s") from None
    except httpx.HTTPError as exc:
        raise SourceUnavailable(f"source {source.source_id}: unreachable ({type(exc).__name__})") from None
    if reply.status_code != 200:
        raise SourceUnavailable(f"source {source.source_id}: HTTP {reply.status_code}")
    try:
        return reply.json()
    except ValueError:
        raise SourceUnavailable(f"source {source.source_id}: answer is not JSON") from None


def http_client(transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """A client for node calls. The TLS context is built once per process: building one per client loads the
    CA bundle again (about 0.1 s of CPU on the event loop, per query and per source)."""
    global _TLS
    if _TLS is None:
        _TLS = ssl.create_default_context()
    # No cap on connections (a query waits on its slowest source, and a capped pool would queue queries behind
    # each other's); idle ones are kept for httpx's 5 s, so the pool is as large as the recent concurrency.
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    return httpx.AsyncClient(transport=transport, verify=_TLS, limits=limits)


_TLS: ssl.SSLContext | None = None


async def fetch_retrieval(
    source: SourceView,
    domain: SigningDomain,
    query: str,
    nonce: bytes,
    epoch: int,
    k: int,
    *,
    timeout: float,
    transport: httpx.AsyncBaseTransport | None = None,
) -> RetrieveResponse:
    """Ask one node; `SourceUnavailable` if it is down, slow or errs, `SignatureError` if its answer is not bound."""
    async with http_client(transport) as client:
        payload = await fetch_answer(source, query, nonce, epoch, k, timeout=timeout, client=client)
    return verify_response(source, domain, payload, query, nonce, epoch, k)
