"""`trustmarket project`: an owner creates a project (escrowing the reward) and follows its rounds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from backend.cli._common import console
from backend.cli._context import CliContext, Commands
from backend.cli._signer import SignerOption

ProjectArgument = Annotated[int, typer.Argument(help="Project id.")]

app = Commands(
    help="A training project: create it and follow its rounds (owners); cancel, challenge, resolve (anyone, arbiters)."
)


def _params(pairs: list[str], option: str = "--rule-param") -> dict:
    """`--rule-param f=1 --rule-param beta=0.1` -> {"f": 1, "beta": 0.1} (values parsed as JSON when they can be)."""
    out = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"{option} expects NAME=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def _pair(text: str | None, option: str) -> tuple[float, float] | None:
    if text is None:
        return None
    low, _, high = text.partition(",")
    try:
        return float(low), float(high)
    except ValueError:
        raise ValueError(f"{option} expects LOW,HIGH, got {text!r}") from None


def _defenses(specs: list[str], none: bool) -> list[dict] | None:
    """`--defense near_copies --defense nnm:f=2` -> [{"name": "near_copies"}, {"name": "nnm", "f": 2}];
    None (the defaults) when no --defense is given, [] with --no-defenses."""
    if none:
        if specs:
            raise ValueError("--no-defenses cannot be combined with --defense")
        return []
    if not specs:
        return None
    out = []
    for spec in specs:
        name, _, rest = spec.partition(":")
        if not name:
            raise ValueError(f"--defense expects NAME or NAME:KEY=VALUE,..., got {spec!r}")
        params = _params([p for p in rest.split(",") if p], "--defense") if rest else {}
        out.append({"name": name, **params})
    return out


@app.command(amounts=True)
def create(
    ctx: typer.Context,
    validation: Annotated[
        Path,
        typer.Option(
            help="The owner's validation set: .csv, .parquet, .jsonl, .npz or .safetensors (see docs/models.md), "
            "split into one sealed shard per round: kept in your home and revealed round by round "
            "(`project reveal-validation`)."
        ),
    ],
    aggregator: Annotated[str, typer.Option(help="Address of the aggregator that finalizes rounds.")],
    arbiter: Annotated[str, typer.Option(help="Address that resolves challenges.")],
    reward: Annotated[str, typer.Option(help="Reward pool to escrow, in ether.")],
    model: Annotated[
        str,
        typer.Option(
            help="builtin:NAME (digits_mlp, digits_cnn, mlp, cnn, linear, ...), hf:DIR (a Hugging Face folder) or "
            "plugin:NAME (an installed trustmarket.models entry point); a bare NAME is builtin."
        ),
    ] = "digits_mlp",
    task: Annotated[
        str, typer.Option(help="classification, text-classification or regression.")
    ] = "classification",
    label_column: Annotated[
        str | None, typer.Option(help="Label column of .csv/.parquet/.jsonl data (default: label).")
    ] = None,
    text_column: Annotated[
        str | None, typer.Option(help="Text column of text data (default for .jsonl: text).")
    ] = None,
    labels: Annotated[
        str | None,
        typer.Option(help="The class labels, comma-separated, when the validation set may miss some."),
    ] = None,
    label_range: Annotated[
        str | None, typer.Option(help="Regression: LOW,HIGH that every target must lie in.")
    ] = None,
    preprocess: Annotated[
        list[str],
        typer.Option(help="Preprocessing of features, in order: scale=FACTOR or standardize (repeatable)."),
    ] = [],  # noqa: B006
    lora: Annotated[
        str | None,
        typer.Option(help="hf: models: LoRA adapters rank=R[,alpha=A][,targets=q,v][,dropout=P][,ffa]."),
    ] = None,
    model_option: Annotated[
        list[str], typer.Option(help="Model option NAME=VALUE, e.g. hidden=32, max_length=64 (repeatable).")
    ] = [],  # noqa: B006
    plugin_wheel: Annotated[
        Path | None,
        typer.Option(
            help="plugin: models: the plugin's wheel, stored so trainers can `trustmarket model install`."
        ),
    ] = None,
    optimizer: Annotated[str, typer.Option(help="Trainers' optimizer: sgd, adam or adamw.")] = "sgd",
    lr: Annotated[
        float, typer.Option(help="Trainers' learning rate in round 0 (the schedule moves it).")
    ] = 0.05,
    epochs: Annotated[int, typer.Option(min=1, help="Trainers' epochs per round.")] = 10,
    max_steps: Annotated[
        int | None, typer.Option(min=1, help="Trainers' optimizer steps per round, instead of epochs.")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Trainers' batch size.")] = 16,
    weight_decay: Annotated[float, typer.Option(min=0.0, help="Trainers' weight decay.")] = 0.0,
    rounds: Annotated[int, typer.Option(min=1)] = 5,
    stake: Annotated[str, typer.Option(help="Minimum trainer stake, in ether.")] = "0.1",
    max_trainers: Annotated[int, typer.Option(min=1)] = 100,
    round_duration: Annotated[
        int, typer.Option(help="Seconds a round accepts commitments to updates.", min=1)
    ] = 3600,
    reveal_window: Annotated[
        int, typer.Option(help="Seconds trainers then have to reveal their updates.", min=1)
    ] = 1800,
    aggregation_window: Annotated[
        int, typer.Option(help="Seconds the aggregator has after a round's reveal window.", min=1)
    ] = 3600,
    challenge_window: Annotated[int, typer.Option(help="Seconds to challenge a finalized round.")] = 3600,
    challenge_bond: Annotated[str, typer.Option(help="Bond a challenger posts, in ether.")] = "0.1",
    slash_after: Annotated[
        int, typer.Option(help="Slash trainers flagged in this many rounds (0: never).")
    ] = 3,
    slash_bps: Annotated[int, typer.Option(help="Share of the stake slashed, in basis points.")] = 5000,
    rule: Annotated[
        str | None,
        typer.Option(
            help="Aggregation rule (trimmed_mean, median, multi_krum, flag, ...; a wrong name lists them all). "
            "Default: trimmed_mean with beta=0.25 (measured against the attack suite, docs/aggregator.md)."
        ),
    ] = None,
    rule_param: Annotated[list[str], typer.Option(help="Rule parameter NAME=VALUE (repeatable).")] = [],  # noqa: B006
    defense: Annotated[
        list[str],
        typer.Option(
            help="A defense before the rule, NAME or NAME:KEY=VALUE,... (repeatable, in order): near_copies, "
            "forged_updates, shared_deviation, norm_clip, arc, nnm, bucketing, fltrust, flame. Default: "
            "near_copies, forged_updates, shared_deviation, norm_clip."
        ),
    ] = [],  # noqa: B006
    no_defenses: Annotated[bool, typer.Option("--no-defenses", help="Run the rule alone.")] = False,
    seed: Annotated[int, typer.Option(help="Seeds the model's initialization, training and valuation.")] = 0,
    *,
    signer: SignerOption,
) -> None:
    """Check that the project can run (model, data, task, rule), publish its model and manifest, seal the
    validation set (one shard per round, kept in your home), then escrow the reward on chain. Nothing is escrowed
    when a check fails."""
    from aggregator.dataset_io import load_table
    from aggregator.defaults import DEFAULT_RULE
    from aggregator.models import parse_lora
    from aggregator.rules import RULES
    from aggregator.schema import infer_schema, parse_preprocessing
    from aggregator.tasks import get_task
    from aggregator.training import Recipe
    from backend.marketplace.publish import publish_project

    rule = rule or DEFAULT_RULE
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; choose one of {', '.join(RULES)}")
    # None: the defaults (aggregator.defaults); publish_project checks both before anything is stored.
    rule_params = _params(rule_param) if rule_param else None
    defenses = _defenses(defense, no_defenses)
    cli = CliContext.of(ctx)
    owner = cli.account(signer)
    recipe = Recipe(optimizer, lr, epochs, max_steps, batch_size, weight_decay, seed=seed)
    table = load_table(validation, label_column=label_column, text_column=text_column)
    declared = [v.strip() for v in labels.split(",")] if labels else None
    schema = infer_schema(
        table,
        task,
        labels=declared,
        label_range=_pair(label_range, "--label-range"),
        preprocessing=parse_preprocessing(preprocess),
    )
    with cli.step(
        "checking the model and data, then publishing model and manifest, sealing the validation shards"
    ):
        published = publish_project(
            cli.store,
            model=model,
            task=task,
            schema=schema,
            validation=schema.examples(table),
            lora=parse_lora(lora) if lora else None,
            model_options=_params(model_option, "--model-option"),
            plugin_wheel=plugin_wheel,
            recipe=recipe,
            rule=rule,
            rule_params=rule_params,
            defenses=defenses,
            seed=seed,
            max_trainers=max_trainers,
            rounds=rounds,
        )
        shards = published.validation.save(cli.settings.home)
    params = published.project_params(
        rounds=rounds,
        round_duration=round_duration,
        reveal_window=reveal_window,
        aggregation_window=aggregation_window,
        min_stake=cli.wei(stake, "--stake"),
        max_trainers=max_trainers,
        aggregator=aggregator,
        arbiter=arbiter,
        challenge_window=challenge_window,
        challenge_bond=cli.wei(challenge_bond, "--challenge-bond"),
        slash_after_flags=slash_after,
        slash_bps=slash_bps,
    )
    with cli.step("escrowing the reward (waiting for the receipt)"):
        project_id = cli.market.create_project(owner, params, value=cli.wei(reward, "--reward"))
    checks = published.checks
    payload = {
        "project": project_id,
        "initial_model": published.initial_model.model_dump(),
        "manifest": published.manifest.model_dump(),
        "model": published.manifest_body.model.uri,
        "task": task,
        "checks": checks,
        "validation_root": published.validation.root,
        "validation_shards": str(shards),
    }

    def render(p: dict) -> None:
        metric = get_task(task).metric
        console.print(
            f"created project {p['project']} (manifest {p['manifest']['cid']}): {p['model']} for {task}, "
            f"{checks['model']['parameters']:,} travelling weights, {checks['validation_examples']} validation "
            f"examples, initial {metric} {checks['initial_metrics'][metric]:.3f}; {checks['rule']} needs "
            f"{checks['min_updates']} usable updates per round"
        )

    cli.emit(payload, render)


@app.command(name="reveal-validation")
def reveal_validation(
    ctx: typer.Context,
    project: ProjectArgument,
    watch: Annotated[
        bool, typer.Option("--watch", help="Keep revealing each round's shard as its commits close.")
    ] = False,
    poll: Annotated[float, typer.Option(help="Seconds between checks with --watch.", min=0.1)] = 5.0,
    *,
    signer: SignerOption,
) -> None:
    """Reveal the open round's validation shard (kept in your home by `project create`) once its commits have
    closed: the aggregator scores the round on it, and cannot finalize before."""
    import time

    from backend.chain.training_market import ProjectStatus
    from backend.marketplace.errors import MarketplaceError
    from backend.marketplace.validation import reveal_due_shard

    cli = CliContext.of(ctx)
    owner = cli.account(signer)

    def reveal_now() -> bool:
        shard = reveal_due_shard(cli.market, cli.store, owner, cli.settings.home, project)
        if shard is not None:
            cli.emit_line(
                {"project": project, "round": shard.round, "cid": shard.cid, "sha256": shard.sha256},
                lambda p: console.print(f"revealed round {p['round']}'s validation shard {p['cid']}"),
            )
        return shard is not None

    if not watch:
        if not reveal_now():
            info = cli.market.project(project)
            raise MarketplaceError(
                f"nothing to reveal for project {project} now: round {info.current_round}'s commits close at chain "
                f"time {info.commit_end}, and its shard is revealed once"
            )
        return
    cli.say(f"revealing project {project}'s validation shards as each round's commits close; Ctrl-C stops")
    while cli.market.project(project).status is ProjectStatus.ACTIVE:
        reveal_now()
        time.sleep(poll)


@app.command(amounts=True)
def status(ctx: typer.Context, project: ProjectArgument) -> None:
    """A project's state and its finalized rounds."""
    from rich.table import Table

    from backend.chain.abi import plain

    cli = CliContext.of(ctx)
    tm = cli.market
    info = tm.project(project)
    rounds = [tm.round(project, r) for r in range(min(info.current_round + 1, info.rounds))]
    payload = {
        "project": plain(info),
        "rounds": [plain(r) for r in rounds],
        "claims_open": tm.claims_open(project),
    }
    if not payload["claims_open"]:
        from backend.cli._claims import claims_outlook
        from backend.cli._hints import chain_now

        payload["claims"] = claims_outlook(cli, project, chain_now(cli))

    def render(p: dict) -> None:
        i = p["project"]
        console.print(
            f"project {project}: {i['status']}, round {i['current_round']}/{i['rounds']}, "
            f"{i['trainer_count']} trainers, pool {cli.amount(i['pool'])}, escrow {cli.amount(i['escrow'])}"
        )
        table = Table("round", "finalized", "submitters", "flagged", "challenge", "model")
        for r in p["rounds"]:
            table.add_row(
                str(r["round"]),
                "yes" if r["finalized_at"] else "open",
                str(r["submitters"]),
                str(r["flagged_count"]),
                "-"
                if str(getattr(r["challenge"], "name", r["challenge"])).lower() == "none"
                else str(r["challenge"]),
                r["model_cid"] or "-",
            )
        console.print(table)
        if not p["claims_open"]:
            console.print(f"claims: {p['claims']}", highlight=False)
        else:
            console.print("claims: open", highlight=False)

    cli.emit(payload, render)


RoundOption = Annotated[int, typer.Option("--round", "-r", min=0, max=65535, help="The round.")]


def _receipt_payload(project: int, receipt, **extra) -> dict:
    return {"project": project, **extra, "transaction": receipt["transactionHash"].to_0x_hex()}


@app.command()
def cancel(ctx: typer.Context, project: ProjectArgument, signer: SignerOption) -> None:
    """Cancel a project whose aggregator missed its deadline (anyone may): the escrow is released by rule."""
    cli = CliContext.of(ctx)
    receipt = cli.market.cancel(cli.account(signer), project)
    cli.emit(
        _receipt_payload(project, receipt),
        lambda p: console.print(
            f"cancelled project {project}: trainers and the owner claim by rule", highlight=False
        ),
    )


@app.command(amounts=True)
def challenge(
    ctx: typer.Context,
    project: ProjectArgument,
    round_: RoundOption,
    signer: SignerOption,
) -> None:
    """Dispute a finalized round within its challenge window, posting the project's challenge bond."""
    cli = CliContext.of(ctx)
    bond = cli.market.project(project).challenge_bond
    receipt = cli.market.challenge(cli.account(signer), project, round_, bond)
    cli.emit(
        _receipt_payload(project, receipt, round=round_, bond_wei=str(bond)),
        lambda p: console.print(
            f"challenged round {round_} of project {project} with a bond of {cli.amount(bond)}; the arbiter decides",
            highlight=False,
        ),
    )


@app.command()
def resolve(
    ctx: typer.Context,
    project: ProjectArgument,
    round_: RoundOption,
    signer: SignerOption,
    uphold: Annotated[
        bool, typer.Option("--uphold/--reject", help="Uphold the challenge (reverse the round) or reject it.")
    ] = ...,  # type: ignore[assignment]
) -> None:
    """The arbiter's decision on a challenged round: --uphold reverses it, --reject lets it stand."""
    cli = CliContext.of(ctx)
    receipt = cli.market.resolve_challenge(cli.account(signer), project, round_, uphold)
    verdict = "upheld" if uphold else "rejected"
    cli.emit(
        _receipt_payload(project, receipt, round=round_, upheld=uphold),
        lambda p: console.print(
            f"{verdict} the challenge of round {round_} of project {project}", highlight=False
        ),
    )


@app.command("expire-challenge")
def expire_challenge(
    ctx: typer.Context,
    project: ProjectArgument,
    round_: RoundOption,
    signer: SignerOption,
) -> None:
    """Close a challenge the arbiter left unresolved past the arbitration period (anyone may)."""
    cli = CliContext.of(ctx)
    receipt = cli.market.expire_challenge(cli.account(signer), project, round_)
    cli.emit(
        _receipt_payload(project, receipt, round=round_),
        lambda p: console.print(
            f"the challenge of round {round_} of project {project} lapsed", highlight=False
        ),
    )
