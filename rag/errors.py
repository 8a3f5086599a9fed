"""dRAG's exceptions: one base class, a subclass per kind of failure a caller can act on.

Like the aggregator's, they subclass `ValueError` and import nothing of the platform layer, so the algorithm
modules (corpus, index, reader, signals, ...) stay importable with numeric libraries only. The CLI turns any
of them into one line and exit code 2, the API into problem+json.
"""

from __future__ import annotations

__all__ = [
    "AuditError",
    "CorpusError",
    "GeneratorError",
    "QueueError",
    "RagError",
    "SignatureError",
    "SourceUnavailable",
]


class RagError(ValueError):
    """Base class of dRAG errors (a `ValueError`: most are bad input)."""


class AuditError(RagError):
    """The canary evaluator cannot go on: a malformed state file, a pool too small, a signer without the role."""


class CorpusError(RagError):
    """A corpus file that cannot be read: missing, not JSONL, a record without its fields."""


class SignatureError(RagError):
    """A source's answer whose signature does not bind it to this query, epoch, documents and operator."""


class SourceUnavailable(RagError):
    """A source node that is down, too slow, or answered something that is not a retrieval result."""


class GeneratorError(RagError):
    """The answer generator failed (an unreachable or malformed chat endpoint)."""


class QueueError(RagError):
    """The feedback queue refused an update (bad values) or could not flush it."""
