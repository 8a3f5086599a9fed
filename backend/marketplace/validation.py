"""Sealed validation: one shard of the owner's validation data per round, committed at creation, revealed when the
round's commits close.

The owner splits its validation set into `rounds` disjoint shards (`seal_validation`, seeded, deterministic) and
commits to all of them in `createProject` as one Merkle root over (round, sha256 of the shard's bytes). The shards
stay in the owner's home (`<home>/sealed/validation/<root>/`) until their turn: once round r takes no more
commitments, `reveal_shard` stores shard r in the shared content store and reveals its CID on chain, where the
contract checks it against the root. Round r is scored on shard r alone, so trainers never see a round's yardstick
before they submit to it, and anyone can recompute a finalized round: `revealed_shard` reads a round's revealed
shard from the chain, and `backend.marketplace.publish.load_validation`, the one loader the round runner and every
verifier call, fetches and verifies it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from eth_account.signers.local import LocalAccount

from aggregator.dataset_io import encode_examples
from aggregator.examples import Examples
from backend.chain.market_rules import RoundPhase, round_phase, validation_leaf
from backend.chain.merkle import MerkleTree
from backend.chain.training_market import TrainingMarket, ValidationShard
from backend.marketplace.errors import MarketplaceError, RoundNotReady
from backend.marketplace.manifest import ContentRef
from backend.storage import ContentStore, sha256_hex

__all__ = [
    "SealedValidation",
    "reveal_due_shard",
    "reveal_shard",
    "revealed_shard",
    "seal_validation",
    "split_validation",
]

_INDEX = "index.json"


def split_validation(examples: Examples, rounds: int, seed: int = 0) -> list[Examples]:
    """`rounds` disjoint shards of `examples`, a seeded permutation cut into near-equal parts (none empty)."""
    if rounds < 1:
        raise MarketplaceError(f"a project has at least one round, got {rounds}")
    if len(examples) < rounds:
        raise MarketplaceError(
            f"{len(examples)} validation examples cannot give each of {rounds} rounds its own shard"
        )
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed))
    return [examples.subset(part) for part in torch.tensor_split(order, rounds)]


@dataclass(frozen=True)
class SealedValidation:
    """The encoded shards (round r's at index r) and the Merkle root `createProject` commits to."""

    shards: tuple[bytes, ...]

    @property
    def sha256s(self) -> list[str]:
        return [sha256_hex(s) for s in self.shards]

    @property
    def tree(self) -> MerkleTree:
        return MerkleTree(tuple(validation_leaf(r, sha) for r, sha in enumerate(self.sha256s)))

    @property
    def root(self) -> str:
        return self.tree.root.hex()

    def proof(self, round_: int) -> list[bytes]:
        return self.tree.proof(round_)

    def save(self, home: Path) -> Path:
        """Keep the shards in the owner's home, by root (the chain names the project's root)."""
        folder = _folder(home, self.root)
        folder.mkdir(parents=True, exist_ok=True)
        for r, shard in enumerate(self.shards):
            (folder / f"round-{r}.safetensors").write_bytes(shard)
        (folder / _INDEX).write_text(json.dumps({"root": self.root, "sha256": self.sha256s}, indent=2))
        return folder

    @classmethod
    def load(cls, home: Path, root: str) -> SealedValidation:
        """The shards of the project whose validation root is `root`, from this home (checked against the root)."""
        folder = _folder(home, root)
        try:
            index = json.loads((folder / _INDEX).read_text())
            shards = tuple(
                (folder / f"round-{r}.safetensors").read_bytes() for r in range(len(index["sha256"]))
            )
        except (OSError, ValueError, KeyError) as exc:
            raise MarketplaceError(
                f"this home holds no sealed validation shards for root {root} ({folder}): {exc}"
            ) from None
        sealed = cls(shards)
        if sealed.root != root.lower().removeprefix("0x"):
            raise MarketplaceError(f"the shards in {folder} do not hash to validation root {root}")
        return sealed


def seal_validation(examples: Examples, rounds: int, seed: int = 0) -> SealedValidation:
    """Split `examples` into one shard per round and encode each (safetensors, as the store will hold it)."""
    return SealedValidation(tuple(encode_examples(part) for part in split_validation(examples, rounds, seed)))


def reveal_shard(
    market: TrainingMarket,
    store: ContentStore,
    account: LocalAccount,
    project_id: int,
    round_: int,
    sealed: SealedValidation,
) -> ValidationShard:
    """Store round `round_`'s shard in the shared store, then reveal it on chain with its proof."""
    shard = sealed.shards[round_]
    cid = store.put(shard)
    receipt = market.reveal_validation(
        account, project_id, round_, cid, sha256_hex(shard), sealed.proof(round_)
    )
    return ValidationShard(round_, cid, sha256_hex(shard), int(receipt["blockNumber"]))


def reveal_due_shard(
    market: TrainingMarket, store: ContentStore, account: LocalAccount, home: Path, project_id: int
) -> ValidationShard | None:
    """Reveal the open round's shard (kept in `home`) if its commits have closed and it is not revealed yet;
    None when there is nothing to reveal now (commits still open, revealed already, no open round)."""
    info = market.project(project_id)
    phase = round_phase(info, market.client.timestamp())
    if phase not in (RoundPhase.REVEAL, RoundPhase.AGGREGATION):
        return None
    if int(market.round(project_id, info.current_round).validation_sha256, 16) != 0:
        return None
    sealed = SealedValidation.load(home, info.validation_root)
    return reveal_shard(market, store, account, project_id, info.current_round, sealed)


def revealed_shard(market: TrainingMarket, project_id: int, round_: int) -> ContentRef:
    """Round `round_`'s validation shard as revealed on chain (its event, checked against the round's record).
    Raises `RoundNotReady` while it is not revealed."""
    shard = market.validation_shard(project_id, round_)
    if shard is None:
        raise RoundNotReady(f"project {project_id}: round {round_}'s validation shard has not been revealed")
    stored = market.round(project_id, round_).validation_sha256
    if stored != shard.sha256:
        raise MarketplaceError(
            f"project {project_id} round {round_}: the revealed shard {shard.sha256} is not the one recorded ({stored})"
        )
    return ContentRef(cid=shard.cid, sha256=shard.sha256)


def _folder(home: Path, root: str) -> Path:
    return Path(home) / "sealed" / "validation" / root.lower().removeprefix("0x")
