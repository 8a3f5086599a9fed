"""Gas of SourceRegistry feedback: one batched transaction for n sources against one transaction per source.

Starts its own anvil, deploys a registry, registers 100 sources, then measures `applyFeedback` with batches of
1..100 entries and, as the baseline, the same updates sent one source per transaction (what Reliable-dRAG does,
~31k gas each). Prints a JSON report (`--json`) or a markdown table for docs/benchmarks.md.

    python bench/gas_source_registry.py [--json] [--max-batch 100]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend.chain.anvil import start_anvil  # noqa: E402
from backend.chain.artifacts import Artifacts  # noqa: E402
from backend.chain.client import ChainClient  # noqa: E402
from backend.chain.keys import dev_account  # noqa: E402
from backend.chain.source_registry import FeedbackEntry, deploy_source_registry  # noqa: E402

SIZES_SHOWN = (1, 2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100)


def measure(max_batch: int) -> dict:
    with start_anvil(attach=False) as node:
        client = ChainClient(node.url, Artifacts.load(ROOT / ".build" / "__local__.json"))
        admin, evaluator = dev_account(0, client.chain_id), dev_account(1, client.chain_id)
        registry = deploy_source_registry(client, admin, min_bond=10**15, evaluator=evaluator.address)
        operators = [dev_account(2 + i % 18, client.chain_id) for i in range(max_batch)]
        # Distinct corpora (the registry holds a corpus once); each operator's n-th source locks n bonds.
        ids = [registry.register(op, f"http://127.0.0.1:{9000 + i}", (i + 1).to_bytes(2, "big") * 16)
               for i, op in enumerate(operators)]  # fmt: skip
        batch = registry.batches()
        batched: dict[int, int] = {}

        def next_epoch() -> None:
            # Each batch in an epoch of its own, so no source meets its per-epoch budget.
            start = registry.genesis() + (registry.current_epoch() + 1) * registry.epoch_length()
            client.w3.provider.make_request("evm_mine", [start])  # type: ignore[arg-type]

        for n in range(1, max_batch + 1):
            batch += 1
            next_epoch()
            # Deltas vary per source so no entry is all zeros (zero bytes are cheaper calldata).
            entries = [FeedbackEntry(sid, 700 + sid, 300 + sid) for sid in ids[:n]]
            batched[n] = registry.apply_feedback(evaluator, batch, entries).gas_used
        single = []
        for sid in ids[:10]:
            batch += 1
            next_epoch()
            single.append(registry.apply_feedback(evaluator, batch, [FeedbackEntry(sid, 700, 300)]).gas_used)
    per_tx = sum(single) / len(single)
    marginal_50 = batched[50] - batched[49] if max_batch >= 50 else None
    slope = (batched[max_batch] - batched[1]) / (max_batch - 1) if max_batch > 1 else None
    return {
        "batch_gas": batched,
        "baseline_per_source_tx": per_tx,
        "marginal_per_source_at_50": marginal_50,
        "marginal_per_source_slope": slope,
        "per_source_at_50": batched[50] / 50 if max_batch >= 50 else None,
        "ratio_baseline_over_batched_50": (per_tx * 50) / batched[50] if max_batch >= 50 else None,
    }


def markdown(report: dict) -> str:
    base = report["baseline_per_source_tx"]
    lines = [
        "| sources n | one batch (gas) | per source | n single-source txs (gas) | baseline / batch |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for n, gas in report["batch_gas"].items():
        if n in SIZES_SHOWN:
            lines.append(f"| {n} | {gas:,} | {gas / n:,.0f} | {base * n:,.0f} | {base * n / gas:.1f}x |")
    lines.append("")
    at_50 = report["marginal_per_source_at_50"]  # None with --max-batch under 50
    lines.append((f"Marginal gas per source at n=50: {at_50:,} " if at_50 is not None else "Marginal gas per source ")
                 + f"(slope over 1..{max(report['batch_gas'])}: {report['marginal_per_source_slope']:,.0f}); "
                 f"one source per transaction: {base:,.0f}.")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the full report as JSON")
    parser.add_argument("--max-batch", type=int, default=100)
    args = parser.parse_args()
    if args.max_batch < 2:
        parser.error("--max-batch must be at least 2")
    report = measure(args.max_batch)
    print(json.dumps(report, indent=2) if args.json else markdown(report))


if __name__ == "__main__":
    main()
