"""What the SourceRegistry contract tests share: the deployment's parameters and a few calls."""

from __future__ import annotations

import struct

MIN_BOND = 10**17
EXIT_DELAY = 3600
MAX_DELTA = 5000
EPOCH = 600
MAX_EVIDENCE = 40_000
SLASH_BPS = 1000
ROOT = b"\x11" * 32
ENDPOINT = "http://127.0.0.1:9001"


def deploy(project, admin, evaluator):
    contract = admin.deploy(
        project.SourceRegistry, MIN_BOND, EXIT_DELAY, MAX_DELTA, EPOCH, MAX_EVIDENCE, SLASH_BPS
    )
    contract.grantRole(contract.EVALUATOR_ROLE(), evaluator, sender=admin)
    return contract


def pack(entries: list[tuple[int, int, int]]) -> bytes:
    return b"".join(struct.pack(">IHH", *entry) for entry in entries)


def register(registry, operator, endpoint=ENDPOINT, root=ROOT, bond=None) -> int:
    """Register with the bond the operator must lock now (or `bond`); returns the new id."""
    bond = registry.requiredBond(operator) if bond is None else bond
    registry.registerSource(endpoint, root, sender=operator, value=bond)
    return registry.sourceCount()


def leave(registry, operator, sid, chain):
    """Exit and withdraw the bond."""
    registry.requestExit(sid, sender=operator)
    chain.pending_timestamp += EXIT_DELAY
    registry.withdrawBond(sid, sender=operator)
