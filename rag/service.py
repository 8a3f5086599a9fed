"""The dRAG service as the API and the CLI run it: one `build_orchestrator` from settings and a chain client.

Both entry points get the same directory (SourceRegistry, cached), embedder (with the shared on-disk cache
under `TRUSTMARKET_HOME/cache/embeddings`), generator and durable feedback queue; they differ only in who may
send feedback on chain (`evaluator`) and when (`inline_flush`: the CLI sends when due, a server on a timer).
"""

from __future__ import annotations

from concurrent.futures import Executor

from eth_account.signers.local import LocalAccount
from sqlalchemy import Engine

from backend.chain.client import ChainClient
from backend.chain.source_registry import SourceRegistry
from backend.db import make_engine
from backend.settings import Settings
from rag.feedback import FeedbackQueue
from rag.generators import ChatGenerator, ExtractiveGenerator, Generator
from rag.index import Embedder
from rag.orchestrator import Orchestrator, OrchestratorConfig, compute_process
from rag.reader import ExtractiveReader
from rag.sources import SourceDirectory

__all__ = ["build_feedback_queue", "build_orchestrator", "embedder_for"]


def embedder_for(settings: Settings) -> Embedder:
    """The embedder with the cache every process of this home shares."""
    return Embedder(cache_dir=settings.home / "cache" / "embeddings")


def build_feedback_queue(
    settings: Settings,
    client: ChainClient,
    evaluator: LocalAccount | None,
    *,
    engine: Engine | None = None,
) -> FeedbackQueue:
    """The durable queue in the configured database; it sends batches only if `evaluator` is given."""
    return FeedbackQueue(
        engine or make_engine(settings.resolved_database_url), SourceRegistry(client), evaluator
    )


def build_orchestrator(
    settings: Settings,
    client: ChainClient,
    *,
    evaluator: LocalAccount | None = None,
    engine: Engine | None = None,
    queue: FeedbackQueue | None = None,
    config: OrchestratorConfig | None = None,
    chat_url: str | None = None,
    chat_model: str = "default",
    chat_api_key: str | None = None,
    inline_flush: bool = True,
    compute: Executor | None = None,
    compute_in_process: bool = False,
    compute_processes: int = 1,
) -> Orchestrator:
    """The orchestrator over the registered sources; feedback is always stored, and sent with `evaluator`.

    `compute_in_process` (a server's choice) runs the CPU part of queries in `compute_processes` processes of
    their own, so it never holds the GIL the serving threads need; with `chat_url` the generator is an HTTP call and stays on threads."""
    directory = SourceDirectory(SourceRegistry(client))
    embedder = embedder_for(settings)
    if compute is None and compute_in_process and not chat_url:
        compute = compute_process(str(settings.home / "cache" / "embeddings"), config or OrchestratorConfig(),
                                  compute_processes)  # fmt: skip
    generator: Generator = (
        ChatGenerator(chat_url, chat_model, api_key=chat_api_key)
        if chat_url
        else ExtractiveGenerator(ExtractiveReader(embedder))
    )
    queue = queue or build_feedback_queue(settings, client, evaluator, engine=engine)
    if queue.on_applied is None:  # our own batch landed: reload the posteriors at once
        queue.on_applied = directory.on_applied
    # Who copies whom, learned from the answers, survives restarts (one file per home).
    return Orchestrator(directory, generator, embedder, queue=queue, config=config, inline_flush=inline_flush,
                        compute=compute, ledger_path=settings.home / "rag" / "ledger.json")  # fmt: skip
