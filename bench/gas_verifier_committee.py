"""Gas of a VerifierCommittee attestation (one aggregated BLS signature, one pairing call) by committee size.

Starts its own anvil, and for each committee size n deploys a committee, registers n verifiers (keys and proofs
of possession from `backend.committee.bls`), finalizes a round on the test market, then submits `attest` signed by
every member and, separately, by the smallest quorum (ceil(2n/3) members). The baseline, measured in the same
run, is the attestation of a one-member committee: n times it is what checking n separate BLS signatures on
chain would cost. Every attestation signs the same digest, so hash-to-G1 costs the same in every row. Also reports the gas of the n-th registration (the committee blob is rewritten on each join).
Prints a JSON report (`--json`) or a markdown table for docs/benchmarks.md.

    python bench/gas_verifier_committee.py [--json] [--sizes 4,16,64]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend.chain.anvil import start_anvil  # noqa: E402
from backend.chain.artifacts import Artifacts  # noqa: E402
from backend.chain.client import ChainClient  # noqa: E402
from backend.chain.keys import dev_account  # noqa: E402
from backend.chain.verifier_committee import deploy_verifier_committee  # noqa: E402
from backend.committee import bls  # noqa: E402
from backend.committee.attestation import aggregate, sign_round, submit  # noqa: E402

MARKET_SOURCE = "contracts/test/TestRoundMarket.sol"
GOAL = 250_000
DIGEST = hashlib.sha256(b"bench round result").digest()
MIN_STAKE = 10**16


def _artifacts() -> Artifacts:
    """The compiled contracts, with the test market (compiled by path: Ape's source scan may not reach it)."""
    import ape

    with contextlib.redirect_stdout(sys.stderr):  # keep Ape's compiler log out of the report
        ape.project.load_contracts(MARKET_SOURCE)
    return Artifacts.load(ROOT / ".build" / "__local__.json")


def _attest_gas(client: ChainClient, deployer, n: int, signer_counts: list[int]) -> dict:
    committee = deploy_verifier_committee(client, deployer, min_stake=MIN_STAKE, exit_delay=3600)
    registration_gas = 0
    keys = [bls.derive_keypair(hashlib.sha256(f"bench verifier {i}".encode()).digest()) for i in range(n)]
    accounts = [dev_account(1 + i, client.chain_id) for i in range(n)]
    for account, key in zip(accounts, keys, strict=True):
        committee.admit(deployer, account.address)  # membership is by admission (#12, F-4/F-5)
        proof = bls.prove_possession(key, account.address, client.chain_id, committee.address)
        receipt = client.transact(
            account, "VerifierCommittee", "register", key.public_g1, key.public_g2, proof,
            value=MIN_STAKE, address=committee.address,
        )  # fmt: skip
        registration_gas = int(receipt["gasUsed"])
    market = client.deploy(deployer, "TestRoundMarket")["contractAddress"]
    results = {}
    for round_, count in enumerate(signer_counts):
        # The same digest for every measurement: hash-to-G1 takes a digest-dependent number of attempts
        # (~2.7k gas each), which would otherwise blur the comparison between committee sizes.
        client.transact(
            deployer, "TestRoundMarket", "setRoundResultDigest", 1, round_, DIGEST, address=market
        )  # fmt: skip
        digest = committee.market_digest(market, 1, round_)
        signatures = [
            sign_round(k, a.address, market, 1, round_, digest)
            for k, a in zip(keys[:count], accounts[:count], strict=True)
        ]
        attestation, rejected = aggregate(committee, signatures)
        assert not rejected, rejected
        results[count] = submit(committee, deployer, attestation).gas_used
    return {"registration_gas": registration_gas, "attest_gas": results}


def measure(sizes: list[int]) -> dict:
    with start_anvil(attach=False, accounts=max(sizes) + 2) as node:
        client = ChainClient(node.url, _artifacts())
        deployer = dev_account(0, client.chain_id)
        baseline = _attest_gas(client, deployer, 1, [1])["attest_gas"][1]
        rows = []
        for n in sizes:
            quorum = math.ceil(2 * n / 3)
            measured = _attest_gas(client, deployer, n, sorted({n, quorum}, reverse=True))
            rows.append(
                {
                    "committee": n,
                    "attest_all": measured["attest_gas"][n],
                    "quorum_signers": quorum,
                    "attest_quorum": measured["attest_gas"][quorum],
                    "register_nth": measured["registration_gas"],
                    "separate_signatures": baseline * n,
                    "ratio_separate_over_aggregated": baseline * n / measured["attest_gas"][n],
                }
            )
    per_member = None
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        per_member = (last["attest_all"] - first["attest_all"]) / (last["committee"] - first["committee"])
    last = rows[-1]
    missing = last["committee"] - last["quorum_signers"]
    per_absent = (last["attest_quorum"] - last["attest_all"]) / missing if missing else None
    return {
        "baseline_one_member": baseline,
        "goal": GOAL,
        "per_member_all_sign": per_member,
        "per_absent_signer": per_absent,
        "rows": rows,
    }


def markdown(report: dict) -> str:
    lines = [
        "| committee n | attest, all sign (gas) | attest, ceil(2n/3) sign | n separate signatures | "
        "separate / aggregated | n-th registration |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['committee']} | {r['attest_all']:,} | {r['attest_quorum']:,} ({r['quorum_signers']}) | "
            f"{r['separate_signatures']:,} | {r['ratio_separate_over_aggregated']:.1f}x | {r['register_nth']:,} |"
        )
    lines.append("")
    per_member, per_absent = report["per_member_all_sign"], report["per_absent_signer"]
    lines.append(
        f"Baseline (one-member committee, same run): {report['baseline_one_member']:,} gas. "
        + (f"Marginal gas per member when all sign: {per_member:,.0f}. " if per_member is not None else "")
        + (f"Per member who did not sign (largest n): {per_absent:,.0f}. " if per_absent is not None else "")
        + f"Goal: <= {report['goal']:,} gas per attestation."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the full report as JSON")
    parser.add_argument("--sizes", default="4,16,64", help="committee sizes, comma-separated (1..128)")
    args = parser.parse_args()
    try:
        sizes = sorted({int(s) for s in args.sizes.split(",")})
    except ValueError:
        parser.error("--sizes takes comma-separated integers")
    if not sizes or sizes[0] < 1 or sizes[-1] > 128:
        parser.error("committee sizes must lie in 1..128")
    report = measure(sizes)
    print(json.dumps(report, indent=2) if args.json else markdown(report))


if __name__ == "__main__":
    main()
