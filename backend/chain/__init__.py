"""The chain client: one typed facade over the deployed contracts, with web3.py."""

from backend.chain.artifacts import Artifacts
from backend.chain.client import ChainClient
from backend.chain.deployments import ContractDeployment, Deployments
from backend.chain.errors import (
    ArtifactsMissing,
    ChainError,
    ChainUnavailable,
    ContractErrors,
    ContractRevert,
    NotDeployed,
    TransactionFailed,
    WrongChain,
    revert_class,
)

__all__ = [
    "Artifacts",
    "ArtifactsMissing",
    "ChainClient",
    "ChainError",
    "ChainUnavailable",
    "ContractDeployment",
    "ContractErrors",
    "ContractRevert",
    "Deployments",
    "NotDeployed",
    "TransactionFailed",
    "WrongChain",
    "revert_class",
]
