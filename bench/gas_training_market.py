"""Gas of TrainingMarket calls: createProject, register, a sealed submission (commitUpdate + revealUpdate, direct
and relayed through the ERC-2771 forwarder), revealValidation, finalizeRound at 10 and 100 trainers, claim.

Runs through Ape on its own anvil (ape-foundry, free port). Each finalizeRound posts a realistic result: every
revealer scored (distinct, non-zero scores), one of them flagged, 59-character CIDs. The baseline, measured in
the same run, is a plain ETH transfer (21,000 gas): every figure is also given as a multiple of it, and commit +
reveal against the 64,395 of the unsealed `submitUpdate` they replace (docs/benchmarks.md, the figure before
#12). The per-trainer marginal cost of finalizeRound is (gas at 100 - gas at 10) / 90; from it, the projected gas
of a full project (MAX_TRAINERS) is compared with anvil's block gas limit. The main figures come from a market
without a verifier committee; the 10-trainer project is then run again in a market wired to a VerifierCommittee
of three (finalize pins the snapshot). Prints a markdown table (or JSON with --json).

    python bench/gas_training_market.py [--json] [--trainers 100]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POOL = 10**19
STAKE = 10**17
BOND = 10**17
ROUNDS = 2
COMMITS, REVEALS = 3600, 1800
# submitUpdate before sealed rounds (#12), measured by this bench at commit 5d114dd.
UNSEALED_SUBMIT = 64_395


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _sha(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def _cid(label: str) -> str:
    # The length of a CIDv1 (base32, raw, sha2-256), so string storage costs what it will in use.
    return "bafkrei" + hashlib.sha256(label.encode()).hexdigest()[:52]


def _shards():
    """The validation root's tree over one shard sha256 per round (backend.chain.merkle, as the contract checks)."""
    from backend.chain.market_rules import validation_leaf
    from backend.chain.merkle import MerkleTree

    shas = [hashlib.sha256(f"shard-{r}".encode()).hexdigest() for r in range(ROUNDS)]
    return shas, MerkleTree(tuple(validation_leaf(r, sha) for r, sha in enumerate(shas)))


def _params(aggregator: str, arbiter: str, rounds: int, max_trainers: int) -> dict:
    return {
        "initialModelCid": _cid("model-0"),
        "initialModelSha256": _sha("model-0"),
        "configCid": _cid("config"),
        "configSha256": _sha("config"),
        "validationRoot": _shards()[1].root,
        "rounds": rounds,
        "roundDuration": COMMITS,
        "revealWindow": REVEALS,
        "aggregationWindow": 3600,
        "minStake": STAKE,
        "maxTrainers": max_trainers,
        "aggregator": aggregator,
        "arbiter": arbiter,
        "challengeWindow": 600,
        "challengeBond": BOND,
        "slashAfterFlags": 2,
        "slashBps": 5_000,
    }


def _result(round_: int, trainers: list[str]) -> dict:
    ordered = sorted(trainers, key=lambda address: int(address, 16))
    scores = [0] + [10**18 // len(ordered) + i for i in range(1, len(ordered))]
    return {
        "modelCid": _cid(f"model-{round_ + 1}"),
        "modelSha256": _sha(f"model-{round_ + 1}"),
        "trainers": ordered,
        "scores": scores,
        "flagged": ordered[:1],
        "reportCid": _cid(f"report-{round_}"),
        "reportSha256": _sha(f"report-{round_}"),
    }


def _salt(trainer, round_: int) -> bytes:
    return hashlib.sha256(f"salt {round_} {trainer.address}".encode()).digest()


def _commitment(ape, market, pid: int, round_: int, trainer) -> bytes:
    from backend.chain.market_rules import update_commitment

    sha = hashlib.sha256(f"{round_}-{trainer.address}".encode()).hexdigest()
    return update_commitment(
        ape.chain.chain_id, market.address, pid, round_, trainer.address, sha, _salt(trainer, round_)
    )


def _forward(ape, forwarder, market, trainer, data: bytes, sender) -> int:
    """`trainer` signs an ERC-2771 request for `data` at the market; `sender` relays it. Returns the gas."""
    from eth_account import Account

    from backend.chain.forwarder import DEFAULT_CALL_GAS, EIP712_DOMAIN, FORWARD_REQUEST_TYPE
    from backend.eip712 import Eip712Domain, typed_data

    deadline = ape.chain.pending_timestamp + 600
    message = {
        "from": trainer.address,
        "to": market.address,
        "value": 0,
        "gas": DEFAULT_CALL_GAS,
        "nonce": forwarder.nonces(trainer.address),
        "deadline": deadline,
        "data": "0x" + data.hex(),
    }
    domain = Eip712Domain(*EIP712_DOMAIN, ape.chain.chain_id, forwarder.address)
    signature = Account.sign_typed_data(
        trainer.private_key, full_message=typed_data(domain, FORWARD_REQUEST_TYPE, message)
    ).signature
    request = (trainer.address, market.address, 0, DEFAULT_CALL_GAS, deadline, data, bytes(signature))
    return forwarder.execute(request, sender=sender).gas_used


def _run_project(ape, market, roles, trainers, gas: dict, label: str) -> int:
    """One two-round project with `trainers`; records the gas of every call under `label`."""
    owner, aggregator, arbiter = roles
    n = len(trainers)
    tx = market.createProject(
        _params(aggregator.address, arbiter.address, 2, max(n, 1)), sender=owner, value=POOL
    )
    gas.setdefault("createProject", tx.gas_used)
    pid = market.projectCount()
    registered = [market.register(pid, sender=t, value=STAKE).gas_used for t in trainers]
    gas.setdefault("register", registered[0])
    shas, tree = _shards()
    for round_ in range(ROUNDS):
        opened = market.getProject(pid).roundOpenedAt
        committed = [
            market.commitUpdate(pid, round_, _commitment(ape, market, pid, round_, t), sender=t).gas_used
            for t in trainers
        ]
        ape.chain.mine(timestamp=opened + COMMITS + 1)
        tx = market.revealValidation(
            pid,
            round_,
            _cid(f"shard-{round_}"),
            bytes.fromhex(shas[round_]),
            tree.proof(round_),
            sender=owner,
        )
        gas.setdefault("revealValidation (2 rounds: a 1-hash proof)", tx.gas_used)
        revealed = [
            market.revealUpdate(
                pid, round_, _cid(f"{round_}-{t.address}"), _sha(f"{round_}-{t.address}"), _salt(t, round_),
                sender=t,
            ).gas_used
            for t in trainers
        ]  # fmt: skip
        gas.setdefault("commitUpdate (first of a round)", committed[0])
        gas.setdefault("commitUpdate (mean)", round(statistics.mean(committed)))
        gas.setdefault("revealUpdate (first of a round)", revealed[0])
        gas.setdefault("revealUpdate (mean)", round(statistics.mean(revealed)))
        tx = market.finalizeRound(
            pid, round_, _result(round_, [t.address for t in trainers]), sender=aggregator
        )
        gas[f"finalizeRound, {label}" + (", last round" if round_ == 1 else "")] = tx.gas_used
    return pid


def _committee_market(ape, owner, members):
    """A VerifierCommittee with `members` seated (BLS keys from backend.committee.bls) and a market wired to it."""
    from backend.committee import bls

    committee = owner.deploy(ape.project.VerifierCommittee, owner.address, STAKE, STAKE, 14 * 24 * 3600)
    keys = [bls.derive_keypair(hashlib.sha256(f"gas bench verifier {i}".encode()).digest()) for i in range(3)]
    for member, key in zip(members, keys, strict=True):
        committee.admit(member.address, sender=owner)
        proof = bls.prove_possession(key, member.address, ape.chain.chain_id, committee.address)
        committee.register(key.public_g1, key.public_g2, proof, sender=member, value=STAKE)
    market = owner.deploy(ape.project.TrainingMarket, committee.address, "0x" + "00" * 20)
    committee.grantRole(committee.MARKET_ROLE(), market.address, sender=owner)
    return committee, keys, market


def _attest(committee, keys, market, pid: int, round_: int, sender) -> None:
    from backend.committee import bls

    digest = bytes(market.roundResultDigest(pid, round_))
    signature = bls.aggregate_g1(bls.sign(k.secret, digest) for k in keys)
    apk = bls.aggregate_g2(k.public_g2 for k in keys)
    bitmap = bls.signer_bitmap(range(len(keys)), 255)
    committee.attest(market, pid, round_, digest, bitmap, apk, signature, sender=sender)


def _with_committee(ape, roles, outsider, members, trainers, gas: dict) -> None:
    """The 10-trainer project in a market with a committee: what finalize, attest and an upheld challenge (which
    slashes the round's attesters) cost."""
    owner, _, arbiter = roles
    committee, keys, market = _committee_market(ape, owner, members)
    committee_gas: dict[str, int] = {}
    pid = _run_project(ape, market, roles, trainers, committee_gas, "10 trainers")
    gas["with committee: finalizeRound, 10 trainers (pins the snapshot)"] = committee_gas[
        "finalizeRound, 10 trainers"
    ]
    _attest(committee, keys, market, pid, 1, outsider)
    market.challenge(pid, 1, sender=outsider, value=BOND)
    gas["with committee: resolveChallenge (upheld: 3 attesters slashed)"] = market.resolveChallenge(
        pid, 1, True, sender=arbiter
    ).gas_used


def measure(max_trainers: int) -> dict:
    os.chdir(ROOT)  # ape.project is the project in the working directory
    import ape
    from ape.logging import logger

    logger.set_level("ERROR")
    port = _free_port()
    network = ape.networks.parse_network_choice(
        "ethereum:local:foundry", provider_settings={"host": f"http://127.0.0.1:{port}"}
    )
    gas: dict[str, int] = {}
    with network as provider:
        test_accounts = ape.accounts.test_accounts
        owner, aggregator, arbiter, outsider = (test_accounts[i] for i in range(4))
        baseline = owner.transfer(outsider, 1).gas_used
        nobody = "0x" + "00" * 20
        forwarder = owner.deploy(ape.project.TrustmarketForwarder, "trustmarket Forwarder")
        market = owner.deploy(ape.project.TrainingMarket, nobody, forwarder.address)  # no committee
        trainers = [test_accounts.generate_test_account() for _ in range(max_trainers)]
        for trainer in trainers:
            provider.set_balance(trainer.address, 10**21)

        _run_project(ape, market, (owner, aggregator, arbiter), trainers[:10], gas, "10 trainers")
        pid = _run_project(
            ape, market, (owner, aggregator, arbiter), trainers, gas, f"{max_trainers} trainers"
        )

        # Payouts of the larger project: a challenge rejected, then claims once the windows are over.
        gas["challenge"] = market.challenge(pid, 1, sender=outsider, value=BOND).gas_used
        gas["resolveChallenge (rejected: bond burned)"] = market.resolveChallenge(
            pid, 1, False, sender=arbiter
        ).gas_used
        ape.chain.pending_timestamp += 601
        flagged = _result(1, [t.address for t in trainers])["flagged"][0]
        honest = next(t for t in trainers if t.address != flagged)
        gas["claim (trainer)"] = market.claim(pid, sender=honest).gas_used
        gas["claim (trainer flagged twice: stake slashed and burned)"] = market.claim(
            pid, sender=next(t for t in trainers if t.address == flagged)
        ).gas_used
        gas["claim (owner refund)"] = market.claim(pid, sender=owner).gas_used

        # The liveness path on a fresh project: one round revealed, the aggregator stalls, anyone cancels.
        market.createProject(_params(aggregator.address, arbiter.address, 2, 10), sender=owner, value=POOL)
        stalled = market.projectCount()
        opened = market.getProject(stalled).roundOpenedAt
        for trainer in trainers[:9]:
            market.register(stalled, sender=trainer, value=STAKE)
            market.commitUpdate(stalled, 0, _commitment(ape, market, stalled, 0, trainer), sender=trainer)
        # The tenth commits and reveals gaslessly: it signs, the outsider relays through the forwarder.
        relayed = trainers[9]
        market.register(stalled, sender=relayed, value=STAKE)
        commit = market.commitUpdate.encode_input(stalled, 0, _commitment(ape, market, stalled, 0, relayed))
        gas["commitUpdate relayed (forwarder.execute, the signer's first nonce)"] = _forward(
            ape, forwarder, market, relayed, bytes(commit), outsider
        )
        ape.chain.mine(timestamp=opened + COMMITS + 1)
        for trainer in trainers[:9]:
            market.revealUpdate(
                stalled, 0, _cid(f"0-{trainer.address}"), _sha(f"0-{trainer.address}"), _salt(trainer, 0),
                sender=trainer,
            )  # fmt: skip
        reveal = market.revealUpdate.encode_input(
            stalled, 0, _cid(f"0-{relayed.address}"), _sha(f"0-{relayed.address}"), _salt(relayed, 0)
        )
        gas["revealUpdate relayed (forwarder.execute)"] = _forward(
            ape, forwarder, market, relayed, bytes(reveal), outsider
        )
        ape.chain.pending_timestamp += REVEALS + 3600 + 1
        gas["cancel"] = market.cancel(stalled, sender=outsider).gas_used
        gas["claim (trainer, after cancel)"] = market.claim(stalled, sender=trainers[0]).gas_used

        members = [test_accounts[i] for i in range(4, 7)]
        _with_committee(ape, (owner, aggregator, arbiter), outsider, members, trainers[:10], gas)
        block_gas_limit = ape.chain.blocks.head.gas_limit
        cap = market.MAX_TRAINERS()

    gas["commit + reveal (mean)"] = gas["commitUpdate (mean)"] + gas["revealUpdate (mean)"]
    at_10, at_n = gas["finalizeRound, 10 trainers"], gas[f"finalizeRound, {max_trainers} trainers"]
    marginal = (at_n - at_10) / (max_trainers - 10)
    pin = gas["with committee: finalizeRound, 10 trainers (pins the snapshot)"] - at_10
    return {
        "committee_pin_overhead": pin,
        "sealed_over_unsealed": gas["commit + reveal (mean)"] / UNSEALED_SUBMIT,
        "gas": gas,
        "baseline_eth_transfer": baseline,
        "finalize_marginal_per_trainer": marginal,
        "finalize_projected_at_cap": at_10 + marginal * (cap - 10),
        "max_trainers_cap": cap,
        "block_gas_limit": block_gas_limit,
    }


def markdown(report: dict) -> str:
    base = report["baseline_eth_transfer"]
    lines = ["| call | gas | x ETH transfer |", "| --- | ---: | ---: |"]
    lines += [f"| {name} | {gas:,} | {gas / base:.1f}x |" for name, gas in report["gas"].items()]
    lines.append(f"| baseline: plain ETH transfer | {base:,} | 1.0x |")
    lines.append("")
    lines.append(
        f"finalizeRound costs {report['finalize_marginal_per_trainer']:,.0f} gas per additional trainer; at the "
        f"cap of {report['max_trainers_cap']:,} trainers that projects to "
        f"{report['finalize_projected_at_cap']:,.0f} gas (block gas limit {report['block_gas_limit']:,}). "
        f"Pinning the committee snapshot adds {report['committee_pin_overhead']:,} gas to finalizeRound. "
        f"A sealed submission (commit + reveal) costs {report['sealed_over_unsealed']:.2f}x the unsealed "
        f"submitUpdate's {UNSEALED_SUBMIT:,} gas."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the full report as JSON")
    parser.add_argument("--trainers", type=int, default=100, help="size of the large project (> 10)")
    args = parser.parse_args()
    if args.trainers <= 10:
        parser.error("--trainers must be more than 10")
    sys.path.insert(0, str(ROOT))
    report = measure(args.trainers)
    print(json.dumps(report, indent=2) if args.json else markdown(report))


if __name__ == "__main__":
    main()
