"""`trustmarket verifier`: BLS keys, committee membership, signing round results, aggregating and submitting.

A verifier recomputes a finalized round itself (`trustmarket verify`) and signs only the digest it got; `sign`
refuses a digest the market does not store. Anyone can `aggregate` the signature files and `submit` the result.
`run` does all of it as a service: recompute every finalized round, sign or challenge, attest at quorum.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from backend.cli._common import console
from backend.cli._context import CliContext, Commands
from backend.cli._signer import SignerOption

if TYPE_CHECKING:
    from backend.chain.verifier_committee import VerifierCommittee


class VerifierContext(CliContext):
    """The committee commands' context: the committee (`--committee` or the deployed one) and the market."""

    def committee(self, address: str | None) -> VerifierCommittee:
        from backend.chain.verifier_committee import VerifierCommittee

        return VerifierCommittee(self.client, _address(address, "--committee") if address else None)

    def market_address(self, committee: VerifierCommittee, market: str | None) -> str:
        return _address(market, "--market") if market else committee.client.address_of("TrainingMarket")


app = Commands(
    context=VerifierContext,
    help="The BLS verifier committee: keys, registration, signing round results, attestations.",
)

BlsKeyOption = Annotated[Path, typer.Option("--bls-key", help="BLS key file written by `verifier keygen`.")]
CommitteeOption = Annotated[
    str | None, typer.Option("--committee", help="VerifierCommittee address (default: the deployed one).")
]
MarketOption = Annotated[
    str | None, typer.Option("--market", help="The market contract (default: the deployed TrainingMarket).")
]
ProjectOption = Annotated[int, typer.Option("--project", min=0, help="Project id.")]
RoundOption = Annotated[int, typer.Option("--round", min=0, max=65535, help="Round number.")]


def _address(value: str, what: str) -> str:
    from web3 import Web3

    from backend.chain.verifier_committee import CommitteeError

    if not Web3.is_address(value):
        raise CommitteeError(f"{what}: {value!r} is not an address")
    return Web3.to_checksum_address(value)


def _write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


@app.command()
def keygen(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", help="Where to write the key file (created mode 0600).")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Create a BLS key pair on BN254 (public key in G2 with its G1 twin)."""
    from backend.committee import bls
    from backend.committee.keys import public_keys, write_key

    keys = bls.generate_keypair()
    write_key(out, keys, force=force)
    CliContext.of(ctx).emit(
        {"file": str(out), **public_keys(keys)}, lambda p: console.print(f"wrote BLS key {p['file']}")
    )


@app.command()
def admit(
    ctx: typer.Context,
    verifier: Annotated[str, typer.Argument(help="The address to admit (it may then register once).")],
    signer: SignerOption,
    committee: CommitteeOption = None,
) -> None:
    """Admit a verifier to the committee (the committee's admission role: its deployer)."""
    cli = VerifierContext.of(ctx)
    vc = cli.committee(committee)
    address = _address(verifier, "verifier")
    with cli.step("admitting (waiting for the receipt)"):
        receipt = vc.admit(cli.account(signer), address)
    payload = {"verifier": address, "transaction": receipt["transactionHash"].to_0x_hex()}
    cli.emit(payload, lambda p: console.print(f"admitted {p['verifier']}: it may register once"))


@app.command(amounts=True)
def register(
    ctx: typer.Context,
    bls_key: BlsKeyOption,
    signer: SignerOption,
    stake: Annotated[
        str | None, typer.Option("--stake", help="Stake in ether (default: the committee's minStake).")
    ] = None,
    committee: CommitteeOption = None,
) -> None:
    """Join the committee (once admitted: `verifier admit`) with a stake, the BLS key and a proof of possession
    made for this account."""
    from backend.committee.attestation import join
    from backend.committee.keys import load_key

    cli = VerifierContext.of(ctx)
    keys = load_key(bls_key)
    vc = cli.committee(committee)
    who = cli.account(signer)
    wei = cli.wei(stake, "--stake") if stake is not None else vc.min_stake()
    info = join(vc, who, keys, wei)
    payload = {
        "verifier": info.address,
        "index": info.index,
        "stake_wei": str(info.stake),
        "epoch": vc.current_epoch(),
    }
    cli.emit(
        payload,
        lambda p: console.print(
            f"registered {p['verifier']} as member {p['index']} with {cli.amount(int(p['stake_wei']))}"
        ),
    )


@app.command()
def sign(
    ctx: typer.Context,
    bls_key: BlsKeyOption,
    verifier: Annotated[str, typer.Option("--verifier", help="The registered verifier address.")],
    digest: Annotated[str, typer.Option("--digest", help="The result digest you recomputed (hex).")],
    project: ProjectOption,
    round_: RoundOption,
    out: Annotated[Path, typer.Option("--out", help="Where to write the signature file.")],
    market: MarketOption = None,
    committee: CommitteeOption = None,
) -> None:
    """Sign a round's result digest, after checking it is the one the market stores and the key is yours."""
    from backend.chain.verifier_committee import CommitteeError
    from backend.committee.attestation import sign_round
    from backend.committee.keys import load_key

    cli = VerifierContext.of(ctx)
    keys = load_key(bls_key)
    vc = cli.committee(committee)
    market_address = cli.market_address(vc, market)
    verifier = _address(verifier, "--verifier")
    stored = vc.market_digest(market_address, project, round_)
    mine = sign_round(keys, verifier, market_address, project, round_, digest)
    if stored == bytes(32):
        raise CommitteeError(f"round {round_} of project {project} is not finalized")
    if stored != mine.digest:
        raise CommitteeError(
            f"your digest differs from the market's (0x{stored.hex()}): do not sign; raise a challenge instead"
        )
    if vc.public_key_g2(verifier) != keys.public_g2:
        raise CommitteeError(f"{verifier} is not registered with this BLS key")
    _write_json(out, mine.to_json())
    cli.emit({"file": str(out), **mine.to_json()}, lambda p: console.print(f"wrote signature {p['file']}"))


@app.command(amounts=True)
def aggregate(
    ctx: typer.Context,
    signatures: Annotated[list[Path], typer.Argument(help="Signature files from `verifier sign`.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the attestation file.")],
    committee: CommitteeOption = None,
) -> None:
    """Combine signatures into one attestation; signatures that do not verify are left out (and listed)."""
    from backend.committee.attestation import VerifierSignature
    from backend.committee.attestation import aggregate as aggregate_signatures
    from backend.committee.keys import read_json

    cli = VerifierContext.of(ctx)
    vc = cli.committee(committee)
    collected = [VerifierSignature.from_json(read_json(p, "signature file")) for p in signatures]
    attestation, rejected = aggregate_signatures(vc, collected)
    _write_json(out, attestation.to_json())
    payload = {
        "file": str(out),
        "signers": list(attestation.signers),
        "signed_weight": attestation.signed_weight,
        "total_weight": attestation.total_weight,
        "left_out": rejected,
    }

    def render(p: dict) -> None:
        console.print(
            f"{len(p['signers'])} signers hold {cli.amount(p['signed_weight'])} of "
            f"{cli.amount(p['total_weight'])} of weight: {p['file']}"
        )
        for address, why in p["left_out"].items():
            console.print(f"left out {address}: {why}")

    cli.emit(payload, render)


@app.command()
def submit(
    ctx: typer.Context,
    attestation: Annotated[Path, typer.Argument(help="Attestation file from `verifier aggregate`.")],
    signer: SignerOption,
    committee: CommitteeOption = None,
) -> None:
    """Send the attestation: the round counts as attested once it is mined."""
    from backend.committee.attestation import Attestation
    from backend.committee.attestation import submit as submit_attestation
    from backend.committee.keys import read_json

    cli = VerifierContext.of(ctx)
    vc = cli.committee(committee)
    record = Attestation.from_json(read_json(attestation, "attestation file"))
    who = cli.account(signer)
    result = submit_attestation(vc, who, record)
    payload = {
        "market": record.market,
        "project": record.project_id,
        "round": record.round,
        "epoch": result.epoch,
        "signed_weight": result.signed_weight,
        "total_weight": result.total_weight,
        "block": result.block,
        "gas_used": result.gas_used,
    }
    cli.emit(payload, lambda p: console.print(f"round {p['round']} attested in block {p['block']}"))


@app.command()
def status(
    ctx: typer.Context,
    project: ProjectOption,
    round_: RoundOption,
    market: MarketOption = None,
    committee: CommitteeOption = None,
) -> None:
    """Whether a round's current result is attested, and its snapshot."""
    from backend.chain.errors import ChainError

    cli = VerifierContext.of(ctx)
    vc = cli.committee(committee)
    market_address = cli.market_address(vc, market)
    digest = vc.market_digest(market_address, project, round_)
    if digest == bytes(32):
        raise ChainError(f"round {round_} of project {project} is not finalized")
    record = vc.round_record(market_address, project, round_, digest)
    payload = {
        "digest": "0x" + digest.hex(),
        "attested": record.attested,
        "pinned": record.pinned,
        "epoch": record.epoch if record.pinned else None,
    }
    cli.emit(payload, lambda p: console.print("attested" if p["attested"] else "not attested"))


@app.command(amounts=True)
def members(
    ctx: typer.Context,
    epoch: Annotated[int | None, typer.Option("--epoch", min=0, help="Default: the current epoch.")] = None,
    committee: CommitteeOption = None,
) -> None:
    """The committee of an epoch, in signer-bitmap order."""
    cli = VerifierContext.of(ctx)
    vc = cli.committee(committee)
    seats = [
        {"index": m.index, "verifier": m.address, "weight_wei": str(m.weight)} for m in vc.members(epoch)
    ]

    def render(rows: list[dict]) -> None:
        if not rows:
            console.print("no members")
        for r in rows:
            console.print(
                f"{r['index']:3} {r['verifier']} {cli.amount(int(r['weight_wei']))} of weight",
                highlight=False,
            )

    cli.emit(seats, render)


@app.command("exit")
def exit_(ctx: typer.Context, signer: SignerOption, committee: CommitteeOption = None) -> None:
    """Leave the committee; the stake can be withdrawn after the exit delay."""
    from backend.cli._hints import chain_now, when

    cli = VerifierContext.of(ctx)
    vc = cli.committee(committee)
    at = vc.request_exit(cli.account(signer))
    cli.emit(
        {"withdrawable_at": at},
        lambda p: console.print(
            f"left the committee; `trustmarket verifier withdraw` pays the stake back from "
            f"{when(p['withdrawable_at'], chain_now(cli))}",
            highlight=False,
        ),
    )


@app.command(amounts=True)
def withdraw(ctx: typer.Context, signer: SignerOption, committee: CommitteeOption = None) -> None:
    """Take the stake back after the exit delay."""
    cli = VerifierContext.of(ctx)
    vc = cli.committee(committee)
    amount = vc.withdraw(cli.account(signer))
    cli.emit(
        {"withdrawn_wei": str(amount)},
        lambda p: console.print(f"withdrew {cli.amount(int(p['withdrawn_wei']))}"),
    )


@app.command()
def run(
    ctx: typer.Context,
    bls_key: BlsKeyOption,
    exchange: Annotated[
        str | None,
        typer.Option(
            "--exchange",
            help="Where the committee shares signatures: a folder, or a gateway's mailbox URL "
            "(default: <gateway>/exchange when TRUSTMARKET_STORE is a gateway).",
        ),
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="One pass over finalized rounds, then exit.")] = False,
    poll: Annotated[float, typer.Option("--poll", min=0.1, help="Seconds between passes.")] = 5.0,
    max_poll: Annotated[
        float, typer.Option("--max-poll", min=0.1, help="Longest pause while nothing changes (it doubles).")
    ] = 60.0,
    from_block: Annotated[
        int, typer.Option("--from-block", min=0, help="Where to start reading events.")
    ] = 0,
    no_challenge: Annotated[
        bool, typer.Option("--no-challenge", help="Report mismatches without raising the challenge.")
    ] = False,
    committee: CommitteeOption = None,
    *,
    signer: SignerOption,
) -> None:
    """Watch finalized rounds: recompute each, sign on a match (attest at quorum), challenge on a mismatch."""
    from backend.chain.training_market import TrainingMarket
    from backend.chain.verifier_committee import CommitteeError
    from backend.committee.exchange import open_exchange
    from backend.committee.keys import load_key
    from backend.committee.service import CommitteeService

    cli = VerifierContext.of(ctx)
    settings = cli.settings
    token = settings.store_token.get_secret_value() if settings.store_token else None
    if exchange is None:
        if not settings.store.startswith(("http://", "https://")) or settings.store.rstrip("/").endswith(
            "/api/v0"
        ):
            raise CommitteeError(
                "pass --exchange FOLDER|URL (the store is not a gateway whose mailbox could serve)"
            )
        exchange = settings.store.rstrip("/") + "/exchange"
    keys = load_key(bls_key)
    vc = cli.committee(committee)
    who = cli.account(signer)
    service = CommitteeService(
        TrainingMarket(vc.client),
        vc,
        cli.store,
        keys,
        who,
        open_exchange(exchange, token),
        challenge=not no_challenge,
    )

    def line(outcome) -> dict:
        return {"project": outcome.project_id, "round": outcome.round, "action": outcome.action,
                "detail": outcome.detail}  # fmt: skip

    def render(p: dict) -> None:
        detail = f": {p['detail']}" if p["detail"] else ""
        console.print(f"project {p['project']} round {p['round']}: {p['action']}{detail}", highlight=False)

    if once:
        outcomes = [line(o) for o in service.run_once(from_block)]

        def render_all(rows: list[dict]) -> None:
            for row in rows:
                render(row)
            if not rows:
                console.print("nothing to do")

        cli.emit(outcomes, render_all)
        return
    cli.say(f"verifying rounds as {who.address} (signatures via {exchange}); Ctrl-C stops")
    with contextlib.suppress(KeyboardInterrupt):
        service.run(
            poll=poll,
            max_poll=max_poll,
            from_block=from_block,
            on_outcome=lambda o: cli.emit_line(line(o), render),
        )
