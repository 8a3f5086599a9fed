"""What an explorer page costs: node requests and latency per page, on a new block (cold) and on the same block
(warm), against the API's own /healthz measured in the same run as the baseline.

Builds the showcase chain (backend/api/explorer/showcase.py) on a fresh anvil, serves the app in process
(Starlette's TestClient), and counts every JSON-RPC request the node receives by wrapping the web3 provider.

    python bench/explorer.py            # ~1 minute; --repeat N page loads per page (default 20)
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import requests
from fastapi.testclient import TestClient

from backend.api import ApiSettings, create_app
from backend.api.explorer.showcase import build_showcase
from backend.chain.anvil import start_anvil


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    node = start_anvil(attach=False)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            showcase = build_showcase(Path(tmp) / "showcase", chain_url=node.url)
            app = create_app(showcase.settings(Path(tmp) / "home"), ApiSettings())
            with TestClient(app) as client:
                run(client, app, showcase, args.repeat)
    finally:
        node.stop()


def run(client: TestClient, app, showcase, repeat: int) -> None:
    explorer = app.state.explorer
    explorer.settings = explorer.settings.model_copy(update={"verify": False})
    ledger = explorer.parts().ledger
    calls = {"n": 0}
    methods: Counter[str] = Counter()
    post = requests.Session.post

    def counting(self, *a, **k):  # every JSON-RPC request web3 sends goes through a requests session
        calls["n"] += 1
        body = k.get("data") or k.get("json") or b"{}"
        sent = json.loads(body) if isinstance(body, bytes | str) else body
        for request in sent if isinstance(sent, list) else [sent]:
            methods[request.get("method", "?")] += 1
        return post(self, *a, **k)

    requests.Session.post = counting  # type: ignore[method-assign]
    trainer = showcase.demo_report["trainers"][0]["address"]
    pages = {
        "/healthz (baseline)": "/healthz",
        "projects": "/",
        "project": f"/projects/{showcase.demo_project}",
        "round": f"/projects/{showcase.demo_project}/rounds/1",
        "trainer": f"/trainers/{trainer}",
        "sources": "/sources",
    }
    rows = []
    cold_methods: dict[str, dict[str, int]] = {}
    for name, path in pages.items():
        client.get(path)
        ledger.client.w3.provider.make_request("evm_mine", [])  # each request pins the head: the next sees it
        calls["n"] = 0
        methods.clear()
        started = time.perf_counter()
        client.get(path)
        cold_s, cold_rpc = time.perf_counter() - started, calls["n"]
        cold_methods[name] = dict(methods)
        warm = []
        calls["n"] = 0
        for _ in range(repeat):
            started = time.perf_counter()
            client.get(path)
            warm.append(time.perf_counter() - started)
        rows.append((name, cold_rpc, calls["n"] / repeat, cold_s, statistics.median(warm)))
    base = rows[0][4]
    print(
        "| page | node requests, new block | node requests, same block | new block | same block (median) | same block / healthz |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, cold_rpc, warm_rpc, cold_s, warm_s in rows:
        print(
            f"| {name} | {cold_rpc} | {warm_rpc:.1f} | {cold_s * 1000:.0f} ms | {warm_s * 1000:.1f} ms | "
            f"{warm_s / base:.1f}x |"
        )
    print("\nnode requests on a new block, by JSON-RPC method:")
    for name, counted in cold_methods.items():
        print(f"  {name}: " + ", ".join(f"{m} {n}" for m, n in sorted(counted.items(), key=lambda i: -i[1])))


if __name__ == "__main__":
    main()
