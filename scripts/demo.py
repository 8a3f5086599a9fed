"""`ape run demo`: the training marketplace end to end (the same as `trustmarket demo`).

Thin over `backend.marketplace.demo`; it starts its own anvil, so it needs no `--network`.
"""

from __future__ import annotations

from pathlib import Path

import click

from backend.marketplace.demo import run_demo


def main() -> None:
    report = run_demo(
        Path("runs/demo"),
        on_round=lambda row: click.echo(
            f"round {row['round']}: test accuracy {row['accuracy']:.3f}, flagged {len(row['flagged'])}"
        ),
    )
    click.echo(
        f"honest share {report['honest_share']:.1%}, final accuracy {report['final_accuracy']:.3f}, "
        f"contract balance {report['contract_balance_wei']} wei; report in runs/demo/report.json"
    )
