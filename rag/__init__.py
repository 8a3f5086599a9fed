"""Decentralized RAG weighted by on-chain source reliability.

Algorithm modules (numeric only): `corpus`, `text`, `index`, `reader`, `pollution`, `metrics`, `reliability`,
`signals`, `signing`. Services: `node` (a data owner's FastAPI source), `sources` (directory and verified calls),
`orchestrator`, `generators`, `feedback` (durable queue to the chain), `evaluation`, `serve`.
Submodules are imported on demand: `import rag` stays cheap (no torch).
"""

__all__ = [
    "corpus",
    "errors",
    "evaluation",
    "feedback",
    "generators",
    "index",
    "metrics",
    "node",
    "orchestrator",
    "pollution",
    "reader",
    "reliability",
    "serve",
    "signals",
    "signing",
    "sources",
    "text",
]
