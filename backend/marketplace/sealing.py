"""A trainer's sealed submission: commit while the round takes commitments, reveal once they close.

`seal_update` picks a random salt and writes the update and its salt to the trainer's own home
(`<home>/sealed/updates/`), nowhere else: until the reveal nothing public identifies the update, so nobody can copy
it. `commit` posts the commitment (directly, or signed and relayed); `reveal` first puts the update in the shared
content store, then reveals its CID, sha256 and salt on chain. A sealed update that was never revealed scores
nothing: the trainer missed the round.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from eth_account.signers.local import LocalAccount

from backend.chain.training_market import TrainingMarket
from backend.marketplace.errors import MarketplaceError
from backend.marketplace.manifest import ContentRef
from backend.storage import CodecError, ContentStore, sha256_hex
from backend.storage.codec import META_PROJECT, META_ROUND, META_TRAINER, decode_state

__all__ = ["SealedUpdate", "commit_sealed", "find_sealed", "reveal_sealed", "seal_update", "sealed_folder"]


@dataclass(frozen=True)
class SealedUpdate:
    """An update kept in the trainer's home until its reveal: where it is and what its commitment binds."""

    chain_id: int
    market: str
    project_id: int
    round: int
    trainer: str
    sha256: str
    salt: str  # 64 hex digits: the secret that keeps the commitment from revealing the update
    update_file: str
    commit_transaction: str | None = None
    reveal_transaction: str | None = None
    cid: str | None = None

    @property
    def path(self) -> Path:
        return Path(self.update_file).parent / "seal.json"

    def commitment(self, market: TrainingMarket) -> bytes:
        return market.commitment_of(
            self.project_id, self.round, self.trainer, self.sha256, bytes.fromhex(self.salt)
        )

    def save(self) -> SealedUpdate:
        _atomic_write(self.path, json.dumps(asdict(self), indent=2, sort_keys=True).encode())
        return self

    def with_(self, **changes) -> SealedUpdate:
        return SealedUpdate(**{**asdict(self), **changes}).save()


def sealed_folder(home: Path, market: TrainingMarket, project_id: int, round_: int, trainer: str) -> Path:
    """Where `trainer`'s sealed update for one round lives in its home (one folder per chain, market and round)."""
    name = f"{market.client.chain_id}-{market.address.lower()}-{project_id}-{round_}-{trainer.lower()}"
    return Path(home) / "sealed" / "updates" / name


def seal_update(
    home: Path, market: TrainingMarket, trainer: str, project_id: int, round_: int, update: bytes
) -> SealedUpdate:
    """Keep `update` (safetensors naming `trainer`, this project and round) in the trainer's home with a fresh
    salt. Refuses an update made for another trainer, project or round: its reveal would be flagged."""
    try:
        _, meta = decode_state(update)
    except CodecError as exc:
        raise MarketplaceError(f"not an update: {exc}") from None
    expected = {META_PROJECT: str(project_id), META_ROUND: str(round_), META_TRAINER: trainer.lower()}
    found = {key: str(meta.get(key, "")).lower() for key in expected}
    if found != expected:
        raise MarketplaceError(
            f"the update names project {meta.get(META_PROJECT)} round {meta.get(META_ROUND)} trainer "
            f"{meta.get(META_TRAINER)}, not project {project_id} round {round_} trainer {trainer}"
        )
    folder = sealed_folder(home, market, project_id, round_, trainer)
    existing = find_sealed(home, market, project_id, round_, trainer)
    if existing is not None and existing.commit_transaction is not None:
        raise MarketplaceError(
            f"{trainer} already committed to an update for project {project_id} round {round_} "
            f"({existing.update_file}); reveal that one"
        )
    folder.mkdir(parents=True, exist_ok=True)
    update_file = folder / "update.safetensors"
    _atomic_write(update_file, update)
    sealed = SealedUpdate(
        chain_id=market.client.chain_id,
        market=market.address,
        project_id=project_id,
        round=round_,
        trainer=trainer,
        sha256=sha256_hex(update),
        salt=secrets.token_bytes(32).hex(),
        update_file=str(update_file),
    )
    return sealed.save()


def find_sealed(
    home: Path, market: TrainingMarket, project_id: int, round_: int, trainer: str
) -> SealedUpdate | None:
    """The trainer's sealed update for the round, if its home has one."""
    path = sealed_folder(home, market, project_id, round_, trainer) / "seal.json"
    if not path.exists():
        return None
    try:
        return SealedUpdate(**json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise MarketplaceError(f"{path} is not a sealed update record: {exc}") from None


def commit_sealed(market: TrainingMarket, account: LocalAccount, sealed: SealedUpdate) -> SealedUpdate:
    """Post the commitment on chain (the contract refuses a closed round or a second commitment)."""
    receipt = market.commit_update(account, sealed.project_id, sealed.round, sealed.commitment(market))
    return sealed.with_(commit_transaction=receipt["transactionHash"].to_0x_hex())


def reveal_sealed(
    market: TrainingMarket, store: ContentStore, account: LocalAccount, sealed: SealedUpdate
) -> SealedUpdate:
    """Put the update in the shared store (now, not before), then reveal it on chain."""
    data = Path(sealed.update_file).read_bytes()
    if sha256_hex(data) != sealed.sha256:
        raise MarketplaceError(f"{sealed.update_file} changed since it was sealed (its sha256 differs)")
    ref = ContentRef(cid=store.put(data), sha256=sealed.sha256)
    receipt = market.reveal_update(
        account, sealed.project_id, sealed.round, ref.cid, ref.sha256, bytes.fromhex(sealed.salt)
    )
    return sealed.with_(cid=ref.cid, reveal_transaction=receipt["transactionHash"].to_0x_hex())


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
