"""`trustmarket rag`: run a source node, ask the dRAG network a question, run the reliability experiment."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from backend.cli._common import console, err_console
from backend.cli._context import CliContext, Commands
from backend.cli._signer import OptionalSignerOption, SignerOption

if TYPE_CHECKING:
    from backend.chain.source_registry import SourceRegistry
    from rag.index import Embedder


class RagContext(CliContext):
    """The RAG commands' context: the source registry and the embedder, besides the base parts."""

    @cached_property
    def registry(self) -> SourceRegistry:
        from backend.chain.source_registry import SourceRegistry

        return SourceRegistry(self.client)

    @cached_property
    def embedder(self) -> Embedder:
        from rag.service import embedder_for

        return embedder_for(self.settings)


app = Commands(context=RagContext, help="Decentralized RAG weighted by on-chain source reliability.")
source_app = Commands(context=RagContext, help="A data owner's source node.")
app.add_typer(source_app, name="source")
canaries_app = Commands(context=RagContext, help="A source-registry evaluator's canary questions.")
app.add_typer(canaries_app, name="canaries")

CorpusOption = Annotated[Path, typer.Option("--corpus", help="JSONL corpus (doc_id, title, context).")]


@source_app.command("register", amounts=True)
def register(
    ctx: typer.Context,
    corpus: CorpusOption,
    endpoint: Annotated[str, typer.Option(help="URL where the node will serve.")],
    signer: SignerOption,
    bond: Annotated[
        str | None,
        typer.Option(
            help="Bond in ether (default: what this operator must lock, the minimum times its live sources + 1)."
        ),
    ] = None,
) -> None:
    """Register a source: lock a bond and commit to the corpus's Merkle root (refused if a live source holds it)."""
    from rag.corpus import load_corpus

    cli = RagContext.of(ctx)
    documents = load_corpus(corpus)
    registry = cli.registry
    operator = cli.account(signer)
    wei = cli.wei(bond, "--bond") if bond is not None else registry.required_bond(operator.address)
    source_id = registry.register(operator, endpoint, documents.commitment, wei)
    payload = {
        "source_id": source_id,
        "commitment": "0x" + documents.commitment.hex(),
        "endpoint": endpoint,
        "bond_wei": str(wei),
    }
    cli.emit(
        payload,
        lambda p: console.print(
            f"registered source {p['source_id']} ({p['commitment']}) with a bond of {cli.amount(wei)}"
        ),
    )


SourceIdOption = Annotated[int, typer.Option("--source-id", help="The id SourceRegistry gave this source.")]


@source_app.command("update")
def update(
    ctx: typer.Context,
    source_id: SourceIdOption,
    signer: SignerOption,
    endpoint: Annotated[str | None, typer.Option(help="The new URL where the node serves.")] = None,
    corpus: Annotated[
        Path | None, typer.Option("--corpus", help="The new corpus: its Merkle root becomes the commitment.")
    ] = None,
) -> None:
    """Point a source at a new endpoint and/or commit to a new corpus (its operator)."""
    from rag.corpus import load_corpus

    if endpoint is None and corpus is None:
        raise ValueError("nothing to update: pass --endpoint URL and/or --corpus FILE")
    cli = RagContext.of(ctx)
    operator = cli.account(signer)
    payload: dict = {"source_id": source_id}
    if endpoint is not None:
        cli.registry.update_endpoint(operator, source_id, endpoint)
        payload["endpoint"] = endpoint
    if corpus is not None:
        commitment = load_corpus(corpus).commitment
        cli.registry.update_commitment(operator, source_id, commitment)
        payload["commitment"] = "0x" + commitment.hex()
    cli.emit(payload, lambda p: console.print(f"updated source {source_id}", highlight=False))


@source_app.command("exit")
def exit_source(ctx: typer.Context, source_id: SourceIdOption, signer: SignerOption) -> None:
    """Leave the registry; the bond can be withdrawn after the exit delay (`rag source withdraw`)."""
    from backend.cli._hints import chain_now, when

    cli = RagContext.of(ctx)
    at = cli.registry.request_exit(cli.account(signer), source_id)
    cli.emit(
        {"source_id": source_id, "withdrawable_at": at},
        lambda p: console.print(
            f"source {source_id} left; `trustmarket rag source withdraw` pays the bond back from "
            f"{when(at, chain_now(cli))}",
            highlight=False,
        ),
    )


@source_app.command("withdraw", amounts=True)
def withdraw(ctx: typer.Context, source_id: SourceIdOption, signer: SignerOption) -> None:
    """Take an exited source's bond back after the exit delay."""
    cli = RagContext.of(ctx)
    amount = cli.registry.withdraw_bond(cli.account(signer), source_id)
    cli.emit(
        {"source_id": source_id, "withdrawn_wei": str(amount)},
        lambda p: console.print(f"withdrew {cli.amount(amount)}", highlight=False),
    )


@source_app.command("serve", output=False)
def serve(
    ctx: typer.Context,
    corpus: CorpusOption,
    source_id: Annotated[int, typer.Option("--source-id", help="The id SourceRegistry gave this source.")],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8700,
    *,
    signer: SignerOption,
) -> None:
    """Serve a corpus, signing every answer with the operator key registered on chain."""
    import uvicorn

    from backend.errors import TrustmarketError
    from rag.corpus import load_corpus
    from rag.index import HybridIndex
    from rag.node import SourceNode, create_node_app
    from rag.signing import SigningDomain

    cli = RagContext.of(ctx)
    documents = load_corpus(corpus)
    client, registry = cli.client, cli.registry
    info = registry.source(source_id)
    operator = cli.account(signer)
    if info.operator != operator.address:
        raise TrustmarketError(
            f"source {source_id} is operated by {info.operator}, not by {operator.address}"
        )
    if info.commitment != documents.commitment:
        raise TrustmarketError(
            f"{corpus} does not match the commitment of source {source_id} on chain; "
            "publish it first (SourceRegistry.updateCommitment)"
        )
    index = HybridIndex(documents, cli.embedder)
    node = SourceNode(documents, index, operator, source_id, SigningDomain(client.chain_id, registry.address))
    console.print(f"source {source_id}: {len(documents)} documents on http://{host}:{port}")
    uvicorn.run(create_node_app(node), host=host, port=port, log_level="info")


@app.command()
def query(
    ctx: typer.Context,
    question: Annotated[str, typer.Argument(help="The question.")],
    sources: Annotated[int, typer.Option(help="Sources asked per query.")] = 4,
    k: Annotated[int, typer.Option(help="Documents asked from each source.")] = 3,
    contexts: Annotated[int, typer.Option(help="Documents given to the generator.")] = 5,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for a source.")] = 10.0,
    gold: Annotated[list[str] | None, typer.Option(help="A known gold answer (repeatable).")] = None,
    rating: Annotated[float | None, typer.Option(help="Your rating of the answer, 0..1.")] = None,
    chat_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible base URL (default: extractive).")
    ] = None,
    chat_model: Annotated[str, typer.Option(help="Model name for --chat-url.")] = "default",
    signer: OptionalSignerOption = None,
) -> None:
    """Ask the registered sources; feedback is queued durably and flushed on chain with an evaluator key."""
    import os

    from rag.canaries import Canary
    from rag.orchestrator import OrchestratorConfig
    from rag.service import build_orchestrator

    cli = RagContext.of(ctx)
    evaluator = cli.account(signer) if signer is not None else None
    # Always stored; sent on chain when due if an evaluator key was given (else by `trustmarket rag flush`).
    orchestrator = build_orchestrator(
        cli.settings, cli.client, evaluator=evaluator,
        config=OrchestratorConfig(sources_per_query=sources, k=k, contexts=contexts, timeout=timeout),
        chat_url=chat_url, chat_model=chat_model, chat_api_key=os.environ.get("TRUSTMARKET_CHAT_API_KEY"),
    )  # fmt: skip
    # Known answers judge each source on its own answer (no reference passage: no tamper check).
    known = Canary("cli", question, tuple(gold), "") if gold else None
    try:
        result = orchestrator.query(question, gold=known, rating=rating)
    finally:
        orchestrator.close()
    cli.emit(result.to_json(), _render_answer)


@app.command()
def flush(ctx: typer.Context, signer: SignerOption) -> None:
    """Send the queued feedback on chain now, as one batch, with the evaluator's key."""
    from rag.service import build_feedback_queue

    cli = RagContext.of(ctx)
    queue = build_feedback_queue(cli.settings, cli.client, cli.account(signer))
    batch = queue.flush()
    payload = (
        {
            "batch": batch.batch,
            "epoch": batch.epoch,
            "sources": len(batch.entries),
            "gas_used": batch.gas_used,
        }
        if batch
        else {}
    )
    cli.emit(
        payload,
        lambda p: console.print(
            f"applied batch {p['batch']} (epoch {p['epoch']}): {p['sources']} sources, {p['gas_used']:,} gas"
            if p
            else "nothing queued (or every queued source spent its budget for this epoch)"
        ),
    )


@canaries_app.command("run")
def run_canaries(
    ctx: typer.Context,
    signer: SignerOption,
    canaries: Annotated[
        Path | None, typer.Option("--canaries", help="JSON lines of id, question, answers, passage (secret).")
    ] = None,
    corpus: Annotated[
        Path | None,
        typer.Option(help="Instead of --canaries: draw the pool from this SQuAD-format corpus's questions."),
    ] = None,
    share: Annotated[
        float, typer.Option(help="With --corpus: the share of its questions in the pool.")
    ] = 0.5,
    seed: Annotated[int, typer.Option(help="Seed of the pool (with --corpus) and of each epoch's draw.")] = 0,
    per_epoch: Annotated[int, typer.Option(help="Canaries committed and asked per epoch.")] = 1,
    probation_per_epoch: Annotated[
        int,
        typer.Option(
            help="Canaries per epoch (at least --per-epoch) while an active source is on probation."
        ),
    ] = 10,
    probation_evidence: Annotated[
        float,
        typer.Option(help="Observations a source's record needs to leave probation (0: no probation)."),
    ] = 10.0,
    once: Annotated[bool, typer.Option(help="Do one step and exit (for cron).")] = False,
    poll: Annotated[float, typer.Option(help="Seconds between steps without --once.")] = 60.0,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for a source.")] = 10.0,
) -> None:
    """Evaluate sources with canaries: each step reveals and slashes finished epochs, asks the current epoch's due
    canaries and commits the next epoch's set, a larger one (--probation-per-epoch) while an active source's record
    holds fewer than --probation-evidence observations. State: TRUSTMARKET_HOME/rag/canaries/ (docs/rag.md)."""
    from rag.auditor import CanaryAuditor
    from rag.canaries import CanarySchedule, canary_pool, load_canaries
    from rag.canary_runner import CanaryRunner, StepReport, canary_home, state_file, stop_on_signals
    from rag.corpus import load_corpus
    from rag.errors import AuditError
    from rag.orchestrator import OrchestratorConfig
    from rag.service import build_orchestrator

    if not poll > 0:
        raise ValueError(f"--poll must be a positive number of seconds, got {poll}")
    if canaries is not None and corpus is None:
        pool = load_canaries(canaries)
    elif corpus is not None and canaries is None:
        pool = canary_pool(load_corpus(corpus), share, seed)
    else:
        raise ValueError("give the canary pool: --canaries FILE.jsonl or --corpus FILE.jsonl, not both")
    cli = RagContext.of(ctx)
    evaluator = cli.account(signer)
    registry = cli.registry
    home = canary_home(cli.settings)
    auditor = CanaryAuditor.load(state_file(cli.settings, registry.address, evaluator.address), registry,
                                 evaluator, CanarySchedule(pool, per_epoch, seed), evidence_dir=home / "evidence")  # fmt: skip
    orchestrator = build_orchestrator(cli.settings, cli.client, evaluator=evaluator,
                                      config=OrchestratorConfig(timeout=timeout))  # fmt: skip
    try:
        runner = CanaryRunner(auditor, orchestrator, per_epoch, probation_per_epoch=probation_per_epoch,
                              probation_evidence=probation_evidence)  # fmt: skip
        runner.check()

        def show(report: StepReport) -> None:
            for notice in report.notices:
                if not cli.as_json:
                    err_console.print(f"[yellow]warning:[/yellow] {notice}", highlight=False)
            cli.emit_line(report.to_json(), _render_step)

        if once:
            report = runner.step()
            show(report)
            if report.error:
                raise AuditError(report.error)
        else:
            with stop_on_signals() as stop:
                runner.run(poll, stop, show)
    finally:
        orchestrator.close()


def _render_step(payload: dict) -> None:
    if payload["epoch"] < 0:
        return  # only a notice (the chain was down)
    parts = [f"epoch {payload['epoch']}:"]
    parts += [f"revealed epoch {e}" for e in payload["revealed"]]
    parts += [f"slashed source {s['source_id']} for epoch {s['epoch']} ({s['burned_wei']} wei)"
              for s in payload["slashes"]]  # fmt: skip
    if payload["asked"]:
        caught = sorted({sid for a in payload["asked"] for sid in a["tampering"]})
        parts.append(
            f"asked {len(payload['asked'])} canaries" + (f" (tampering: sources {caught})" if caught else "")
        )
    if payload["committed"]:
        parts.append(
            f"committed {payload['committed']['count']} canaries for epoch {payload['committed']['epoch']}"
            + (f" (probation: sources {payload['probation']})" if payload["probation"] else "")
        )
    if payload["waiting"]:
        parts.append(f"{payload['waiting']} waiting")
    console.print(" ".join(parts) if len(parts) > 1 else f"{parts[0]} nothing to do", highlight=False)


def _render_answer(payload: dict) -> None:
    console.print(f"[bold]{payload['answer']}[/bold]")
    for cite in payload["citations"]:
        console.print(f"  cited: source {cite['source_id']} / {cite['doc_id']}")
    for source in payload["sources"]:
        console.print(f"  source {source['id']}: {source['status']} reliability={source['reliability']:.3f} "
                      f"contribution={source['contribution']:.2f} {source['detail']}")  # fmt: skip


@app.command("eval")
def evaluate(
    ctx: typer.Context,
    corpus: Annotated[
        Path | None, typer.Option(help="SQuAD-format JSONL (default: the packaged copy).")
    ] = None,
    scenario: Annotated[
        str, typer.Option(help="independent | collude | collude-half | control | sybil | sleeper | targeted.")
    ] = "independent",
    scenario_file: Annotated[
        Path | None, typer.Option(help="A scenario of your own, as JSON (docs/rag.md); overrides --scenario.")
    ] = None,
    pollution: Annotated[
        str | None,
        typer.Option(help="Independent sources at these fractions, e.g. 0,0.5,1 (overrides both)."),
    ] = None,
    queries: Annotated[
        int, typer.Option(help="Users' questions in the stream (canaries come on top).")
    ] = 300,
    seed: Annotated[
        int, typer.Option(help="Seed of the pollution, the question order and the canaries.")
    ] = 0,
    canary_fraction: Annotated[
        float, typer.Option(help="Canary questions mixed in per user question (0 for none).")
    ] = 0.1,
    turn_at: Annotated[int | None, typer.Option(help="Query at which a sleeper turns (default 151).")] = None,
    probation: Annotated[
        int, typer.Option(help="Epochs of canaries only before users' questions (new sources' probation).")
    ] = 1,
    clean: Annotated[
        bool, typer.Option(help="Also run the scenario with no pollution (the upper bound).")
    ] = True,
    http: Annotated[bool, typer.Option(help="Serve the nodes over real HTTP on loopback.")] = False,
) -> None:
    """The reliability experiment against a centralized index, under a named attack scenario (docs/rag.md)."""
    from rich.progress import Progress, TaskID

    from rag.corpus import DEFAULT_CORPUS
    from rag.evaluation import EvalConfig, run_evaluation
    from rag.scenarios import load_scenario

    cli = RagContext.of(ctx)
    cfg = cli.settings
    config = EvalConfig(corpus=corpus or DEFAULT_CORPUS, queries=queries, seed=seed, clean=clean, http=http,
                        scenario=load_scenario(scenario_file) if scenario_file else scenario,
                        pollution=_fractions(pollution) if pollution is not None else None,
                        canary_fraction=canary_fraction, turn_at=turn_at, probation_epochs=probation,
                        cache_dir=cfg.home / "cache" / "embeddings")  # fmt: skip
    with Progress(console=console, transient=True, disable=cli.as_json) as progress:
        tasks: dict[str, TaskID] = {}

        def tick(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = progress.add_task(f"{label} setting", total=total)
            progress.update(tasks[label], completed=done)

        report = run_evaluation(config, artifacts_path=cfg.artifacts_path, progress=tick)
    cli.emit(report, _render_report)


def _fractions(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(
            f"--pollution takes fractions separated by commas, e.g. 0,0.5,1; got {text!r}"
        ) from None


def _render_report(report: dict) -> None:
    from rich.table import Table

    scenario = report["scenario"]
    table = Table(title=f"dRAG reliability, {scenario['name']}: {scenario['description']} "
                        f"({report['queries']} queries, metric {report['metric']})")  # fmt: skip
    for column in (
        "source",
        "pollution",
        "attacker",
        "reliability",
        "observations",
        "slots",
        "status",
        "burned",
    ):
        table.add_column(column, justify="right")
    for s in report["sources"]:
        table.add_row(str(s["id"]), f"{s['pollution']:.0%}", "yes" if s["attacker"] else "", f"{s['reliability']:.3f}",
                      f"{s['observations']:.1f}", str(s["slots"]), s["status"], f"{s['burned']:,}")  # fmt: skip
    console.print(table)
    console.print(f"accuracy polluted: decentralized {report['decentralized']['accuracy']:.1%}, "
                  f"centralized {report['centralized']['accuracy']:.1%}; attackers got "
                  f"{report['attacker_slot_share']:.1%} of the query slots")  # fmt: skip
    if "spearman" in report:
        console.print(f"spearman(reliability, -pollution) {report['spearman']:.3f}")
    if "targeted" in report:
        t = report["targeted"]
        console.print(f"targeted questions ({t['questions']}): decentralized {t['decentralized']:.1%}, "
                      f"centralized {t['centralized']:.1%}")  # fmt: skip
    if "sleeper" in report:
        caught = report["sleeper"]["queries_to_below_median"]
        console.print(f"sleeper turned at query {report['sleeper']['turned_at']}: "
                      + (f"below the median source {caught} queries later" if caught else "never below the median"))  # fmt: skip
    if "clean" in report:
        c = report["clean"]
        console.print(f"accuracy clean:    decentralized {c['decentralized']['accuracy']:.1%}, "
                      f"centralized {c['centralized']['accuracy']:.1%}")  # fmt: skip
    canaries, gas = report["canaries"], report["gas"]
    console.print(
        f"canaries: {canaries['asked']} asked, {canaries['slashes']} slashes, {canaries['burned']:,} wei burned"
    )
    console.print(f"gas: {gas['per_batch']:,.0f} per batch ({gas['batches']} batches), "
                  f"{gas['marginal_per_source']:,.0f} marginal per source")  # fmt: skip
