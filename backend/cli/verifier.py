"""`trustmarket verifier`: BLS keys, committee membership, signing round results, aggregating and submitting.

A verifier recomputes a finalized round itself (`trustmarket verify`) and signs only the digest it got; `sign`
refuses a digest the market does not store. Anyone can `aggregate` the signature files and `submit` the result.
`run` does all of it as a service: recompute every finalized round, sign or challenge, attest at quorum.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from web3 import Web3

from backend.chain.errors import ChainError
from backend.chain.verifier_committee import CommitteeError, VerifierCommittee
from backend.cli._common import JsonOption, console, emit, handles_errors
from backend.cli._context import (
    AccountOption,
    DevAccountOption,
    KeystoreOption,
    chain_client,
    signer,
    store,
)
from backend.committee import bls
from backend.committee.attestation import Attestation, VerifierSignature, join, sign_round
from backend.committee.attestation import aggregate as aggregate_signatures
from backend.committee.attestation import submit as submit_attestation
from backend.committee.keys import load_key, public_keys, read_json, write_key

app = typer.Typer(
    help="The BLS verifier committee: keys, registration, signing round results, attestations.",
    no_args_is_help=True,
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


def _committee(address: str | None) -> VerifierCommittee:
    client = chain_client()
    return VerifierCommittee(client, _address(address, "--committee") if address else None)


def _address(value: str, what: str) -> str:
    if not Web3.is_address(value):
        raise CommitteeError(f"{what}: {value!r} is not an address")
    return Web3.to_checksum_address(value)


def _market(committee: VerifierCommittee, market: str | None) -> str:
    return _address(market, "--market") if market else committee.client.address_of("TrainingMarket")


def _write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


@app.command()
@handles_errors
def keygen(
    out: Annotated[Path, typer.Option("--out", help="Where to write the key file (created mode 0600).")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Create a BLS key pair on BN254 (public key in G2 with its G1 twin)."""
    keys = bls.generate_keypair()
    write_key(out, keys, force=force)
    emit(
        {"file": str(out), **public_keys(keys)},
        as_json,
        lambda p: console.print(f"wrote BLS key {p['file']}"),
    )


@app.command()
@handles_errors
def register(
    bls_key: BlsKeyOption,
    stake: Annotated[
        int | None, typer.Option("--stake", min=1, help="Stake in wei (default: minStake).")
    ] = None,
    committee: CommitteeOption = None,
    keystore: KeystoreOption = None,
    account: AccountOption = None,
    dev_account: DevAccountOption = None,
    as_json: JsonOption = False,
) -> None:
    """Join the committee with a stake, the BLS key and a proof of possession made for this account."""
    keys = load_key(bls_key)
    vc = _committee(committee)
    who = signer(vc.client, keystore, account, dev_account)
    info = join(vc, who, keys, stake if stake is not None else vc.min_stake())
    payload = {
        "verifier": info.address,
        "index": info.index,
        "stake": info.stake,
        "epoch": vc.current_epoch(),
    }
    emit(payload, as_json, lambda p: console.print(f"registered {p['verifier']} as member {p['index']}"))


@app.command()
@handles_errors
def sign(
    bls_key: BlsKeyOption,
    verifier: Annotated[str, typer.Option("--verifier", help="The registered verifier address.")],
    digest: Annotated[str, typer.Option("--digest", help="The result digest you recomputed (hex).")],
    project: ProjectOption,
    round_: RoundOption,
    out: Annotated[Path, typer.Option("--out", help="Where to write the signature file.")],
    market: MarketOption = None,
    committee: CommitteeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Sign a round's result digest, after checking it is the one the market stores and the key is yours."""
    keys = load_key(bls_key)
    vc = _committee(committee)
    market_address = _market(vc, market)
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
    emit(
        {"file": str(out), **mine.to_json()}, as_json, lambda p: console.print(f"wrote signature {p['file']}")
    )


@app.command()
@handles_errors
def aggregate(
    signatures: Annotated[list[Path], typer.Argument(help="Signature files from `verifier sign`.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the attestation file.")],
    committee: CommitteeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Combine signatures into one attestation; signatures that do not verify are left out (and listed)."""
    vc = _committee(committee)
    collected = [VerifierSignature.from_json(read_json(p, "signature file")) for p in signatures]
    attestation, rejected = aggregate_signatures(vc, collected)
    _write_json(out, attestation.to_json())
    payload = {
        "file": str(out),
        "signers": list(attestation.signers),
        "signed_stake": attestation.signed_stake,
        "total_stake": attestation.total_stake,
        "left_out": rejected,
    }

    def render(p: dict) -> None:
        console.print(
            f"{len(p['signers'])} signers hold {p['signed_stake']} of {p['total_stake']} wei: {p['file']}"
        )
        for address, why in p["left_out"].items():
            console.print(f"left out {address}: {why}")

    emit(payload, as_json, render)


@app.command()
@handles_errors
def submit(
    attestation: Annotated[Path, typer.Argument(help="Attestation file from `verifier aggregate`.")],
    committee: CommitteeOption = None,
    keystore: KeystoreOption = None,
    account: AccountOption = None,
    dev_account: DevAccountOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send the attestation: the round counts as attested once it is mined."""
    vc = _committee(committee)
    record = Attestation.from_json(read_json(attestation, "attestation file"))
    who = signer(vc.client, keystore, account, dev_account)
    result = submit_attestation(vc, who, record)
    payload = {
        "market": record.market,
        "project": record.project_id,
        "round": record.round,
        "epoch": result.epoch,
        "signed_stake": result.signed_stake,
        "total_stake": result.total_stake,
        "block": result.block,
        "gas_used": result.gas_used,
    }
    emit(payload, as_json, lambda p: console.print(f"round {p['round']} attested in block {p['block']}"))


@app.command()
@handles_errors
def status(
    project: ProjectOption,
    round_: RoundOption,
    market: MarketOption = None,
    committee: CommitteeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Whether a round's current result is attested, and its snapshot."""
    vc = _committee(committee)
    market_address = _market(vc, market)
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
    emit(payload, as_json, lambda p: console.print("attested" if p["attested"] else "not attested"))


@app.command()
@handles_errors
def members(
    epoch: Annotated[int | None, typer.Option("--epoch", min=0, help="Default: the current epoch.")] = None,
    committee: CommitteeOption = None,
    as_json: JsonOption = False,
) -> None:
    """The committee of an epoch, in signer-bitmap order."""
    vc = _committee(committee)
    seats = [{"index": m.index, "verifier": m.address, "stake": m.stake} for m in vc.members(epoch)]

    def render(rows: list[dict]) -> None:
        for r in rows:
            console.print(f"{r['index']:3} {r['verifier']} {r['stake']}")

    emit(seats, as_json, render)


@app.command("exit")
@handles_errors
def exit_(
    committee: CommitteeOption = None,
    keystore: KeystoreOption = None,
    account: AccountOption = None,
    dev_account: DevAccountOption = None,
    as_json: JsonOption = False,
) -> None:
    """Leave the committee; the stake can be withdrawn after the exit delay."""
    vc = _committee(committee)
    when = vc.request_exit(signer(vc.client, keystore, account, dev_account))
    emit(
        {"withdrawable_at": when},
        as_json,
        lambda p: console.print(f"stake withdrawable from {p['withdrawable_at']}"),
    )


@app.command()
@handles_errors
def withdraw(
    committee: CommitteeOption = None,
    keystore: KeystoreOption = None,
    account: AccountOption = None,
    dev_account: DevAccountOption = None,
    as_json: JsonOption = False,
) -> None:
    """Take the stake back after the exit delay."""
    vc = _committee(committee)
    amount = vc.withdraw(signer(vc.client, keystore, account, dev_account))
    emit({"withdrawn": amount}, as_json, lambda p: console.print(f"withdrew {p['withdrawn']} wei"))


@app.command()
@handles_errors
def run(
    bls_key: BlsKeyOption,
    exchange: Annotated[
        Path, typer.Option("--exchange", help="Folder the committee shares for signature files.")
    ],
    once: Annotated[bool, typer.Option("--once", help="One pass over finalized rounds, then exit.")] = False,
    poll: Annotated[float, typer.Option("--poll", min=0.1, help="Seconds between passes.")] = 5.0,
    from_block: Annotated[
        int, typer.Option("--from-block", min=0, help="Where to start reading events.")
    ] = 0,
    no_challenge: Annotated[
        bool, typer.Option("--no-challenge", help="Report mismatches without raising the challenge.")
    ] = False,
    committee: CommitteeOption = None,
    keystore: KeystoreOption = None,
    account: AccountOption = None,
    dev_account: DevAccountOption = None,
    as_json: JsonOption = False,
) -> None:
    """Watch finalized rounds: recompute each, sign on a match (attest at quorum), challenge on a mismatch."""
    from backend.chain.training_market import TrainingMarket
    from backend.committee.exchange import SignatureExchange
    from backend.committee.service import CommitteeService

    keys = load_key(bls_key)
    vc = _committee(committee)
    who = signer(vc.client, keystore, account, dev_account)
    service = CommitteeService(
        TrainingMarket(vc.client),
        vc,
        store(),
        keys,
        who,
        SignatureExchange(exchange),
        challenge=not no_challenge,
    )

    def show(outcome) -> None:
        line = {
            "project": outcome.project_id,
            "round": outcome.round,
            "action": outcome.action,
            "detail": outcome.detail,
        }
        emit(
            line,
            as_json,
            lambda p: console.print(
                f"project {p['project']} round {p['round']}: {p['action']} {p['detail']}"
            ),
        )

    if once:
        for outcome in service.run_once(from_block):
            show(outcome)
        return
    if not as_json:
        console.print(f"verifying rounds as {who.address}; Ctrl-C stops")
    with contextlib.suppress(KeyboardInterrupt):
        service.run(poll=poll, from_block=from_block, on_outcome=show)
