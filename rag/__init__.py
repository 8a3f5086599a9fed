"""Decentralized RAG weighted by on-chain source reliability.

Algorithm modules (numeric only): `corpus`, `text`, `index`, `reader`, `pollution`, `metrics`, `reliability`,
`sampling`, `independence`, `evidence`, `signals`, `canaries`, `scenarios`, `signing`. Services: `node` (a data
owner's FastAPI source), `sources` (directory and verified calls), `orchestrator`, `generators`, `feedback`
(durable queue to the chain), `auditor` (canaries on chain and slashing), `evaluation`, `serve`.
Submodules are imported on demand: `import rag` stays cheap (no torch).
"""

__all__ = [
    "auditor",
    "canaries",
    "corpus",
    "errors",
    "evaluation",
    "evidence",
    "feedback",
    "generators",
    "independence",
    "index",
    "metrics",
    "node",
    "orchestrator",
    "pollution",
    "reader",
    "reliability",
    "sampling",
    "scenarios",
    "serve",
    "signals",
    "signing",
    "sources",
    "text",
]
