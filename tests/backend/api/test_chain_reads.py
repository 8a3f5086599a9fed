"""Chain reads per request: one head lookup, then reads at that block from a cache keyed by it. Counted at the
provider, the only way out of the process to the node."""

from __future__ import annotations

import pytest

from backend.chain.reads import BlockCachedClient, pinned_reads
from backend.chain.training_market import ProjectParams, TrainingMarket

pytestmark = pytest.mark.chain

# Not the owner: an owner may not aggregate its own project (#12, F-3).
AGGREGATOR = "0x" + "a9" * 20


def _create_project(chain_client, owner, tag: int) -> int:
    digest = f"{tag:064x}"
    return TrainingMarket(chain_client).create_project(
        owner,
        ProjectParams(
            initial_model_cid=f"bafy-model-{tag}", initial_model_sha256=digest, config_cid=f"bafy-config-{tag}",
            config_sha256=digest, validation_root=digest, rounds=2, round_duration=3600, reveal_window=600,
            aggregation_window=600, min_stake=10**15, max_trainers=4, aggregator=AGGREGATOR, arbiter=AGGREGATOR,
            challenge_window=0, challenge_bond=0,
        ),
        value=10**17,
    )  # fmt: skip


class RpcCounter:
    """Counts the JSON-RPC requests an HTTP provider sends (web3 caches `make_request`: count below it)."""

    def __init__(self, provider):
        self.provider, self.methods = provider, []
        self._real = provider._make_request

    def __enter__(self):
        def counted(method, request_data):
            self.methods.append(str(method))
            return self._real(method, request_data)

        self.provider._make_request = counted
        return self

    def __exit__(self, *exc):
        self.provider._make_request = self._real


def test_listing_projects_costs_one_rpc_per_request_in_steady_state(api, chain_client, dev_accounts):
    _, headers = api.member("lister", tier=1)
    for tag in (1, 2, 3):
        _create_project(chain_client, dev_accounts[5], tag)
    provider = api.services.chain.get().w3.provider
    with RpcCounter(provider) as first:
        listed = api.client.get("/v1/projects", headers=headers)
    assert listed.status_code == 200 and [p["id"] for p in listed.json()] == [1, 2, 3]
    with RpcCounter(provider) as steady:
        again = api.client.get("/v1/projects", headers=headers)
    assert again.json() == listed.json()
    assert len(first.methods) > 3  # the first request read every project
    assert steady.methods == ["eth_getBlockByNumber"]  # then only the head (was 12 calls for 3 projects)
    # A new block (here another client's transaction) is seen by the next request, never a stale listing.
    _create_project(chain_client, dev_accounts[5], 4)
    assert [p["id"] for p in api.client.get("/v1/projects", headers=headers).json()] == [1, 2, 3, 4]


def test_reads_are_consistent_within_a_request_and_follow_own_writes(chain_client, dev_accounts):
    client = BlockCachedClient(chain_client)
    market = TrainingMarket(client)
    assert market.project_count() == 0  # outside a pin: the node's latest state, uncached
    with pinned_reads():
        before = market.project_count()
        _create_project(chain_client, dev_accounts[6], 9)  # someone else's block lands mid-request
        assert market.project_count() == before  # one request, one block
        _create_project(client, dev_accounts[6], 10)  # our own transaction moves the pin to its block
        assert market.project_count() == 2
    shared = BlockCachedClient(chain_client, head_ttl_s=3600)
    with pinned_reads():
        assert TrainingMarket(shared).project_count() == 2
    with RpcCounter(shared.w3.provider) as counter, pinned_reads():
        assert TrainingMarket(shared).project_count() == 2
    assert counter.methods == []  # the head was reused across requests, and the read came from the cache


def test_the_pinned_head_is_the_block_reads_are_made_at(chain_client, dev_accounts):
    client = BlockCachedClient(chain_client)
    with pinned_reads():
        with RpcCounter(client.w3.provider) as counter:
            head = client.pinned_head()
            assert client.pinned_head() == head  # asked once per pin
        assert counter.methods == ["eth_getBlockByNumber"]
        block = chain_client.w3.eth.get_block(head.number)
        assert (head.hash, head.timestamp) == (block["hash"].to_0x_hex(), block["timestamp"])
        chain_client.w3.provider.make_request("evm_mine", [])
        assert client.pinned_head() == head  # a new block does not move a request's pin
    with pinned_reads():
        assert client.pinned_head().number == head.number + 1
    assert client.pinned_head().number == head.number + 1  # outside a pin: the newest block
