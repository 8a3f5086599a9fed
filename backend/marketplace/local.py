"""Sealed rounds played in one process on a local chain (the demo, the explorer's showcase, tests): every trainer
commits, the chain's clock moves past the commit window (anvil's `evm_mine`), the owner reveals the round's
validation shard and every trainer reveals its update, which is then in the shared store for the aggregator.

Each trainer keeps its sealed update in its own home, as separate people would; only the clock is shared.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount

from backend.chain.anvil import mine_at
from backend.chain.training_market import TrainingMarket
from backend.marketplace.sealing import SealedUpdate
from backend.marketplace.trainer import GlobalModel, reveal_update, submit_update
from backend.marketplace.validation import reveal_due_shard
from backend.storage import ContentStore

__all__ = ["close_commits", "play_sealed_round"]


def close_commits(market: TrainingMarket, project_id: int) -> int:
    """Move the local chain to the first second after the open round's commit window; returns the chain time."""
    return mine_at(market.client, market.project(project_id).commit_end + 1)


def play_sealed_round(
    market: TrainingMarket,
    store: ContentStore,
    model: GlobalModel,
    updates: Mapping[LocalAccount, bytes],
    *,
    homes: Mapping[Any, Path],
    owner: LocalAccount,
    owner_home: Path,
    reveal: bool = True,
) -> dict[str, SealedUpdate]:
    """Every trainer of `updates` commits to its update (kept in `homes[address]`); then, with `reveal`, the
    commit window is closed, the owner reveals the round's validation shard and every trainer its update. The round
    can then be finalized at once (every committer revealed)."""
    sealed: dict[str, SealedUpdate] = {
        account.address: submit_update(market, account, model, update, home=homes[account.address])
        for account, update in updates.items()
    }
    if not reveal:
        return sealed
    close_commits(market, model.project_id)
    reveal_due_shard(market, store, owner, owner_home, model.project_id)
    accounts: dict[str, LocalAccount] = {account.address: account for account in updates}
    return {address: reveal_update(market, store, accounts[address], s) for address, s in sealed.items()}
