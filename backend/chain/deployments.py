"""Where the contracts live on a network: `deployments/<network>.json`."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from backend.chain.errors import NotDeployed

__all__ = ["ContractDeployment", "Deployments"]


@dataclass(frozen=True)
class ContractDeployment:
    address: str
    block: int
    transaction: str


@dataclass
class Deployments:
    """Addresses, chain id and deployment blocks of the project's contracts on one network."""

    network: str
    chain_id: int
    contracts: dict[str, ContractDeployment] = field(default_factory=dict)
    abi_source: str = ".build/__local__.json"
    deployer: str | None = None

    def address(self, name: str) -> str:
        try:
            return self.contracts[name].address
        except KeyError:
            raise NotDeployed(
                f"{name} is not deployed on {self.network} (chain {self.chain_id}): run `trustmarket chain deploy`"
            ) from None

    @property
    def first_block(self) -> int:
        """The earliest deployment block: where event scans can start."""
        return min((c.block for c in self.contracts.values()), default=0)

    @classmethod
    def load(cls, path: Path) -> Deployments:
        try:
            raw = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise NotDeployed(f"no deployments file at {path}: run `trustmarket chain deploy`") from None
        except json.JSONDecodeError as exc:
            raise NotDeployed(f"deployments file {path} is not valid JSON: {exc}") from None
        try:
            contracts = {name: ContractDeployment(**c) for name, c in raw["contracts"].items()}
            return cls(
                network=raw["network"],
                chain_id=int(raw["chain_id"]),
                contracts=contracts,
                abi_source=raw.get("abi_source", ".build/__local__.json"),
                deployer=raw.get("deployer"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise NotDeployed(f"deployments file {path} is malformed: {exc!r}") from None

    def save(self, path: Path) -> None:
        """Write atomically, so a reader never sees half a file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = asdict(self)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as tmp:
            json.dump(payload, tmp, indent=2, sort_keys=True)
            tmp.write("\n")
        os.replace(tmp.name, path)
