"""Merkle trees as OpenZeppelin's `MerkleProof` verifies them: keccak256 of each sorted pair, so a proof is the
list of siblings from leaf to root and needs no left/right flags.

Leaves are hashed as OpenZeppelin's StandardMerkleTree hashes them, `keccak256(bytes.concat(keccak256(
abi.encode(values))))`: the double hash keeps a leaf from passing for an inner node. An odd node at the end of a
level moves up unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eth_abi import encode as abi_encode
from eth_utils import keccak

__all__ = ["MerkleTree", "leaf_hash", "verify_proof"]


def leaf_hash(types: Sequence[str], values: Sequence[object]) -> bytes:
    """keccak256(bytes.concat(keccak256(abi.encode(values))))."""
    return keccak(keccak(abi_encode(list(types), list(values))))


def _pair(a: bytes, b: bytes) -> bytes:
    return keccak(a + b) if a < b else keccak(b + a)


def verify_proof(root: bytes, leaf: bytes, proof: Sequence[bytes]) -> bool:
    """`MerkleProof.verify(proof, root, leaf)`."""
    node = leaf
    for sibling in proof:
        node = _pair(node, sibling)
    return node == root


@dataclass(frozen=True)
class MerkleTree:
    """A tree over `leaves` (32-byte hashes, in their given order)."""

    leaves: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not self.leaves:
            raise ValueError("a Merkle tree needs at least one leaf")
        if any(len(leaf) != 32 for leaf in self.leaves):
            raise ValueError("Merkle leaves are 32-byte hashes")

    def _levels(self) -> list[list[bytes]]:
        levels = [list(self.leaves)]
        while len(levels[-1]) > 1:
            level = levels[-1]
            up = [_pair(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                up.append(level[-1])
            levels.append(up)
        return levels

    @property
    def root(self) -> bytes:
        return self._levels()[-1][0]

    def proof(self, index: int) -> list[bytes]:
        """The siblings of leaf `index` from the bottom up."""
        if not 0 <= index < len(self.leaves):
            raise IndexError(f"leaf {index} of {len(self.leaves)}")
        siblings = []
        for level in self._levels()[:-1]:
            mate = index ^ 1
            if mate < len(level):
                siblings.append(level[mate])
            index //= 2
        return siblings
