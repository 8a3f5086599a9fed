"""Deploy the project's contracts and record them in `deployments/<network>.json`.

Constructor arguments are filled by parameter name: roles (`admin`, `evaluator`, ...) go to the deployer,
everything else comes from `CONSTRUCTOR_DEFAULTS` or the caller's overrides, so adding a contract means adding a
name to `CONTRACTS` and, if it takes new parameters, their defaults here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount

from backend.chain.client import ChainClient
from backend.chain.deployments import ContractDeployment, Deployments
from backend.chain.errors import ArtifactsMissing, ChainError
from backend.settings import project_root

__all__ = ["CONSTRUCTOR_DEFAULTS", "CONTRACTS", "deploy_contracts"]

# What `trustmarket chain deploy` deploys, in order (later ones may take earlier ones' addresses by name):
# TrainingMarket takes the VerifierCommittee's and the forwarder's addresses, fixed at construction.
CONTRACTS: tuple[str, ...] = (
    "VerifierCommittee",
    "TrustmarketForwarder",
    "TrainingMarket",
    "SourceRegistry",
    "AccessRegistry",
)

_NO_CONTRACT = "0x0000000000000000000000000000000000000000"

# Parameters whose value is the deployer's address.
_ROLE_PARAMETERS = frozenset({"admin", "owner", "initialAdmin", "evaluator", "initialOwner", "governor"})


@dataclass(frozen=True)
class _Context:
    deployer: str
    deployed: Mapping[str, str]


# Defaults by constructor parameter name, or by `Contract.parameter` where one contract needs its own: a value or a
# function of the deployment context.
CONSTRUCTOR_DEFAULTS: dict[str, Any | Callable[[_Context], Any]] = {
    "minBond": 10**16,  # 0.01 ETH to register a data source
    "exitDelay": 3600,  # a source's bond is returned an hour after it asks to leave
    "maxDelta": 10_000,  # most evidence feedback may add to a source per epoch, each way (1,000 = one observation)
    "epochLength": 3600,  # SourceRegistry epochs (feedback budgets, canary commit/reveal) last an hour
    "maxEvidence": 40_000,  # a source's record keeps the last ~40 observations (older ones are forgotten)
    "slashBps": 1000,  # a tenth of a source's bond burned per tampered canary
    # A committee member stays slashable for 14 days after leaving: longer than any challenge window the market
    # accepts (up to 7 days) plus the arbiter's 7 days; attestations are accepted for 7 days after finalization.
    "VerifierCommittee.exitDelay": 14 * 24 * 3600,
    "maxWeight": 10**17,  # no verifier weighs more than 0.1 ETH of stake in a quorum
    "name": "trustmarket Forwarder",  # the forwarder's EIP-712 domain name
    "maxTier": 3,  # access tiers 1..3 (0 = none)
    "minStake": 10**16,  # verifier committee stake
    "market": lambda ctx: ctx.deployed.get("TrainingMarket"),
    "trainingMarket": lambda ctx: ctx.deployed.get("TrainingMarket"),
    # A market deployed without a committee (e.g. `names=("TrainingMarket",)`) has none: the challenge window
    # alone makes its rounds final. Deploy VerifierCommittee first, in the same call, to wire it in.
    "committee": lambda ctx: ctx.deployed.get("VerifierCommittee", _NO_CONTRACT),
    # Likewise without TrustmarketForwarder the market takes no relayed calls.
    "forwarder": lambda ctx: ctx.deployed.get("TrustmarketForwarder", _NO_CONTRACT),
}


def _constructor_args(
    client: ChainClient, name: str, ctx: _Context, overrides: Mapping[str, Any]
) -> list[Any]:
    constructor = next((i for i in client.artifacts.abi(name) if i.get("type") == "constructor"), None)
    args: list[Any] = []
    for param in (constructor or {}).get("inputs", []):
        key = param["name"].strip("_")
        if key in overrides:
            value = overrides[key]
        elif key in _ROLE_PARAMETERS:
            value = ctx.deployer
        elif f"{name}.{key}" in CONSTRUCTOR_DEFAULTS or key in CONSTRUCTOR_DEFAULTS:
            default = CONSTRUCTOR_DEFAULTS.get(f"{name}.{key}", CONSTRUCTOR_DEFAULTS.get(key))
            value = default(ctx) if callable(default) else default
        else:
            raise ChainError(f"{name}: no value for constructor parameter {key!r}; pass it as an override")
        if value is None:
            raise ChainError(f"{name}: constructor parameter {key!r} needs a contract deployed before it")
        args.append(value)
    return args


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(project_root()))
    except ValueError:
        return str(path)


def deploy_contracts(
    client: ChainClient,
    account: LocalAccount,
    *,
    network: str,
    names: tuple[str, ...] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Deployments:
    """Deploy `names` (default: every contract in `CONTRACTS` that is compiled) and return their record."""
    available = set(client.artifacts.names())
    wanted = names or tuple(n for n in CONTRACTS if n in available)
    missing = [n for n in wanted if n not in available]
    if missing:
        raise ArtifactsMissing(f"not compiled: {', '.join(missing)} (run `ape compile`)")
    chain_id = client.chain_id
    deployed: dict[str, ContractDeployment] = {}
    for name in wanted:
        ctx = _Context(account.address, {k: v.address for k, v in deployed.items()})
        args = _constructor_args(client, name, ctx, (overrides or {}).get(name, {}))
        receipt = client.deploy(account, name, *args)
        deployed[name] = ContractDeployment(
            address=str(receipt["contractAddress"]),
            block=receipt["blockNumber"],
            transaction=receipt["transactionHash"].to_0x_hex(),
        )
    if "VerifierCommittee" in deployed and "TrainingMarket" in deployed:
        # The market's upheld challenges slash the attesters of the rounds they overturn.
        from backend.chain.verifier_committee import VerifierCommittee

        committee = VerifierCommittee(client, address=deployed["VerifierCommittee"].address)
        committee.grant_market(account, deployed["TrainingMarket"].address)
    if "SourceRegistry" in deployed:
        # The deployer evaluates until it hands the role to the query service's relayer.
        from backend.chain.source_registry import SourceRegistry

        registry = SourceRegistry(client, address=deployed["SourceRegistry"].address)
        registry.grant_evaluator(account, account.address)
    return Deployments(
        network=network,
        chain_id=chain_id,
        contracts=deployed,
        abi_source=_relative(client.artifacts.path),
        deployer=account.address,
    )
