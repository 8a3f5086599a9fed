"""`ape run deploy --network ethereum:local:foundry`: deploy the contracts and write deployments/<network>.json.

Thin over `backend.chain.deploy`. On a local network the deployer is Ape's first test account; elsewhere pass
`TRUSTMARKET_DEPLOYER=<ape account alias>` (its password is asked for). ape-foundry stops an anvil it started when
the script ends, so start the node first (`trustmarket chain up --detach`) to keep the deployment.
"""

from __future__ import annotations

import os

import click
from ape import accounts, networks
from eth_account import Account

from backend.chain.artifacts import Artifacts
from backend.chain.client import ChainClient
from backend.chain.deploy import deploy_contracts
from backend.chain.keys import ape_keystore, load_keystore
from backend.settings import Settings


def main() -> None:
    provider = networks.provider
    network = f"{provider.network.ecosystem.name}:{provider.network.name}:{provider.name}"
    settings = Settings(chain_url=provider.uri, network=network)
    if alias := os.environ.get("TRUSTMARKET_DEPLOYER"):
        deployer = load_keystore(ape_keystore(alias), click.prompt(f"Password for {alias}", hide_input=True))
    else:
        deployer = Account.from_key(accounts.test_accounts[0].private_key)
    client = ChainClient(settings.chain_url, Artifacts.load(settings.artifacts_path))
    deployments = deploy_contracts(client, deployer, network=network)
    deployments.save(settings.deployments_file)
    for name, record in deployments.contracts.items():
        click.echo(f"{name:18} {record.address}")
    click.echo(f"wrote {settings.deployments_file}")
