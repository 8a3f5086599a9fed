"""The contracts' AccessControl roles by name: `keccak256("EVALUATOR_ROLE")` and so on (DEFAULT_ADMIN_ROLE is 0)."""

from __future__ import annotations

# Every role a deployed contract declares, and the contract that declares it.
ROLES: dict[str, tuple[str, ...]] = {
    "DEFAULT_ADMIN_ROLE": ("AccessRegistry", "SourceRegistry"),
    "EVALUATOR_ROLE": ("SourceRegistry",),
    "GRANTOR_ROLE": ("AccessRegistry",),
    "TERMS_ADMIN_ROLE": ("AccessRegistry",),
}


def role_hash(name: str) -> bytes:
    from eth_utils import keccak

    if name not in ROLES:
        raise ValueError(f"unknown role {name!r}; roles: {', '.join(sorted(ROLES))}")
    return bytes(32) if name == "DEFAULT_ADMIN_ROLE" else keccak(text=name)


def role_name(role: bytes | str) -> str:
    """The name of a role hash (bytes or 0x-hex), or the hash itself when it is none of ours."""
    raw = bytes.fromhex(role.removeprefix("0x")) if isinstance(role, str) else bytes(role)
    for name in ROLES:
        if role_hash(name) == raw:
            return name
    return "0x" + raw.hex()
