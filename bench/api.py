"""What structured access costs: one endpoint behind the full gate against the same endpoint with no gate.

The gated route pays for everything `require_scope` does per request (JWT check, revocation lookup, tier from
the cache, scope and terms checks, the rate-limit and daily-quota transaction) plus the audit row; the twin runs
the same handler with `public` only. Both live in one uvicorn process started by `trustmarket api serve`'s code
path over a private anvil with the contracts deployed, and a keep-alive load generator on loopback drives them
in adjacent pairs of slices, so drift hits both alike. Reports p50/p99 latency and throughput per side (medians
over slices) and the gated/ungated ratios per pair (median, min, max).

    python bench/api.py [--seconds 2] [--slices 8] [--concurrency 8] [--endpoint sources] [--json]
    python bench/api.py --gas      # gas of each AccessRegistry transaction the API relies on
    python bench/api.py --load [--workers 1] [--seconds 3] [--source-latency 0.2] [--flood 48] [--json]
                                   # the API under load, restarts and several workers (bench/api_load.py)
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = "bench secret, long enough for HS256 signing keys"
TWIN_PREFIX = "/bench/ungated"
# name -> (method, path); predict posts PREDICT_ROWS digits rows to project 1's current model.
ENDPOINTS = {"sources": ("GET", "/v1/rag/sources"), "predict": ("POST", "/v1/projects/1/predict")}
PREDICT_ROWS = 16
PREDICT_CHARS = 2_000
GATES = {"sources": ("rag:sources", "read"), "predict": ("models:predict", "predict")}


# -- server side -------------------------------------------------------------------------------------------------


def serve(port: int) -> None:
    """The API as `trustmarket api serve` builds it, plus ungated twins of the benchmarked endpoints."""
    import uvicorn
    from fastapi import Depends

    from backend.api.deps import ChainDep, ServicesDep, public
    from backend.api.routes.predict import PredictIn, Prediction, run_prediction
    from backend.api.routes.rag import SourceView, list_sources
    from backend.cli.api import served_app

    app = served_app()

    # Same handler bodies, same response models (FastAPI validates them in the thread pool): only the gate differs.
    @app.get(f"{TWIN_PREFIX}/v1/rag/sources", dependencies=[Depends(public)])
    def sources_ungated(services: ServicesDep, chain: ChainDep) -> list[SourceView]:
        return list_sources(services, chain)

    @app.post(f"{TWIN_PREFIX}/v1/projects/{{project_id}}/predict", dependencies=[Depends(public)])
    async def predict_ungated(project_id: int, body: PredictIn, services: ServicesDep) -> Prediction:
        return await run_prediction(
            services, project_id, body, max_rows=PREDICT_ROWS, max_chars=PREDICT_CHARS, tier="none"
        )

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# -- load generator ----------------------------------------------------------------------------------------------


async def _worker(
    port: int, request: bytes, stop_at: float, latencies: list[float], errors: list[int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if status != 200:
                errors.append(status)
    finally:
        writer.close()


def drive(
    port: int, path: str, token: str | None, seconds: float, concurrency: int, body: bytes | None = None
) -> dict[str, float]:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    if body is None:
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}\r\n".encode()
    else:
        request = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
    latencies: list[float] = []
    errors: list[int] = []

    async def run() -> None:
        stop_at = time.perf_counter() + seconds
        await asyncio.gather(
            *(_worker(port, request, stop_at, latencies, errors) for _ in range(concurrency))
        )

    started = time.perf_counter()
    asyncio.run(run())
    elapsed = time.perf_counter() - started
    if errors:
        raise SystemExit(f"{path}: {len(errors)} non-200 answers (first: {errors[0]})")
    latencies.sort()
    return {
        "requests": len(latencies),
        "throughput_rps": len(latencies) / elapsed,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    }


# -- set-up ------------------------------------------------------------------------------------------------------


def _chain(home: Path):
    from eth_utils import keccak

    from backend.chain.access_registry import AccessRegistry, decision_ref
    from backend.chain.anvil import start_anvil
    from backend.chain.artifacts import Artifacts
    from backend.chain.client import ChainClient
    from backend.chain.deploy import deploy_contracts
    from backend.chain.keys import dev_account

    node = start_anvil(attach=False)
    client = ChainClient(node.url, Artifacts.load(ROOT / ".build" / "__local__.json"))
    admin = dev_account(0, 31337)
    deployments = deploy_contracts(
        client,
        admin,
        network="ethereum:local:foundry",
        names=("TrainingMarket", "AccessRegistry", "SourceRegistry"),
    )
    deployments.save(home / "deployments" / "local.json")
    client.deployments = deployments
    registry = AccessRegistry(client)
    user = dev_account(1, 31337)
    registry.set_tier(admin, user.address, 3, client.timestamp() + 86_400, decision_ref("bench"))
    terms = keccak(text="bench terms")
    registry.publish_terms(admin, terms, "ipfs://bench")
    deadline = client.timestamp() + 3600
    registry.accept_terms_for(
        admin, user.address, terms, deadline, registry.sign_acceptance(user, terms, deadline)
    )
    _project(client, home)
    return node, user


def _project(client, home: Path) -> None:
    """Project 1: digits_mlp's initial model and manifest in the server's store, created on chain."""
    from aggregator.data import load_digits_data
    from backend.chain.keys import dev_account
    from backend.chain.training_market import TrainingMarket
    from backend.marketplace.publish import publish_project
    from backend.storage import LocalStore

    data = load_digits_data(0)
    published = publish_project(
        LocalStore(home / "store"), model="digits_mlp", validation=(data.validation.X, data.validation.y),
        rounds=1, rule="fedavg",
    )  # fmt: skip
    owner, aggregator = dev_account(2, 31337), dev_account(3, 31337)
    TrainingMarket(client).create_project(
        owner,
        published.project_params(
            rounds=1, round_duration=86_400, reveal_window=3600, aggregation_window=3600, min_stake=10**15,
            max_trainers=4, aggregator=aggregator.address, arbiter=aggregator.address, challenge_window=0,
            challenge_bond=0,
        ),
        value=10**18,
    )  # fmt: skip


def _login(base: str, user) -> str:
    import httpx
    from eth_account import Account
    from eth_account.messages import encode_defunct

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*redefines.*")  # siwe's grammars, harmless
        import siwe

    nonce = httpx.post(f"{base}/v1/auth/nonce").json()
    message = siwe.SiweMessage(
        domain=nonce["domain"], address=user.address, uri=base, version="1", chain_id=nonce["chain_id"],
        issued_at=datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"), nonce=nonce["nonce"],
    ).prepare_message()  # fmt: skip
    signature = Account.sign_message(encode_defunct(text=message), user.key).signature.to_0x_hex()
    reply = httpx.post(f"{base}/v1/auth/login", json={"message": message, "signature": signature})
    reply.raise_for_status()
    return reply.json()["access_token"]


def gas() -> dict[str, int]:
    """Gas used by AccessRegistry's transactions on a fresh anvil."""
    from eth_account import Account
    from eth_utils import keccak

    from backend.chain.access_registry import AccessRegistry, decision_ref
    from backend.chain.anvil import start_anvil
    from backend.chain.artifacts import Artifacts
    from backend.chain.client import ChainClient
    from backend.chain.deploy import deploy_contracts
    from backend.chain.keys import dev_account

    node = start_anvil(attach=False)
    try:
        client = ChainClient(node.url, Artifacts.load(ROOT / ".build" / "__local__.json"))
        admin = dev_account(0, 31337)
        client.deployments = deploy_contracts(client, admin, network="bench", names=("AccessRegistry",))
        registry = AccessRegistry(client)
        user, terms = Account.from_key(keccak(text="bench user")), keccak(text="bench terms")
        now = client.timestamp()
        used = {"deploy": int(client.w3.eth.get_transaction_receipt(
            client.deployments.contracts["AccessRegistry"].transaction)["gasUsed"])}  # fmt: skip
        used["setTier (new grant)"] = registry.set_tier(
            admin, user.address, 2, now + 86_400, decision_ref("a")
        )["gasUsed"]
        used["setTier (change)"] = registry.set_tier(
            admin, user.address, 3, now + 172_800, decision_ref("b")
        )["gasUsed"]
        used["revoke"] = registry.revoke(admin, user.address, decision_ref("c"))["gasUsed"]
        used["publishTerms"] = registry.publish_terms(admin, terms, "ipfs://" + "b" * 59)["gasUsed"]
        deadline = client.timestamp() + 600
        signature = registry.sign_acceptance(user, terms, deadline)
        used["acceptTermsFor (relayed)"] = registry.accept_terms_for(
            admin, user.address, terms, deadline, signature
        )["gasUsed"]
        return {k: int(v) for k, v in used.items()}
    finally:
        node.stop()


def gate_alone(env: dict[str, str], user, scope: str, cost: str, calls: int = 20_000) -> float:
    """Microseconds per admission by `require_scope`'s logic in-process (no HTTP, no framework), the common
    case: a known token, a cached tier, quota from the lease."""
    from fastapi.security import HTTPAuthorizationCredentials

    from backend.api import ApiSettings, build_services
    from backend.api.deps import _admit
    from backend.settings import Settings

    saved = dict(os.environ)
    os.environ.update({**env, "TRUSTMARKET_HOME": str(Path(env["TRUSTMARKET_HOME"]) / "gate")})
    try:
        services = build_services(Settings(), ApiSettings())
    finally:
        os.environ.clear()
        os.environ.update(saved)
    token, _ = services.tokens.issue(user.address, 31337)
    credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)

    async def loop() -> float:
        for _ in range(100):  # warm: token remembered, tier cached, lease taken
            await _admit(services, credentials, scope, True, cost, {})
        started = time.perf_counter()
        for _ in range(calls):
            await _admit(services, credentials, scope, True, cost, {})
        return (time.perf_counter() - started) / calls * 1e6

    try:
        return statistics.median(asyncio.run(loop()) for _ in range(3))
    finally:
        services.close()


def main() -> int:
    if "--load" in sys.argv[1:]:
        sys.path.insert(0, str(ROOT / "bench"))
        from api_load import main as load_main

        return load_main([a for a in sys.argv[1:] if a != "--load"])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one measured slice")
    parser.add_argument("--slices", type=int, default=8, help="adjacent gated/ungated pairs")
    parser.add_argument("--concurrency", type=int, default=8, help="keep-alive connections")
    parser.add_argument("--endpoint", choices=sorted(ENDPOINTS), default="sources")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--gas", action="store_true", help="report AccessRegistry gas instead")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return 0
    if args.gas:
        for name, amount in gas().items():
            print(f"{name:28}{amount:>10}")
        return 0

    from backend.chain.anvil import free_port

    home = Path(tempfile.mkdtemp(prefix="trustmarket-bench-api-"))
    node, user = _chain(home)
    port = free_port()
    # Quotas high enough that the load never trips them: the bench measures the gate's cost, not its refusals.
    tiers = {
        "0": {"name": "none", "requests_per_minute": 10, "daily_units": 100},
        "3": {
            "name": "bench",
            "scopes": ["rag:sources", "models:predict"],
            "max_predict_rows": PREDICT_ROWS,
            "requests_per_minute": 10**9,
            "daily_units": 10**12,
        },
    }
    env = {
        **os.environ,
        "TRUSTMARKET_HOME": str(home),
        "TRUSTMARKET_CHAIN_URL": node.url,
        "TRUSTMARKET_CHAIN_ID": "31337",
        "TRUSTMARKET_DEPLOYMENTS_DIR": str(home / "deployments"),
        "TRUSTMARKET_API_JWT_SECRET": SECRET,
        "TRUSTMARKET_API_SIWE_DOMAIN": f"127.0.0.1:{port}",
        "TRUSTMARKET_API_TIERS": json.dumps(tiers),
    }
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)], env=env, cwd=ROOT)
    try:
        import httpx

        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the API did not start")
            time.sleep(0.2)
        token = _login(base, user)
        method, path = ENDPOINTS[args.endpoint]
        body = None
        if method == "POST":
            from aggregator.data import load_digits_data

            body = json.dumps({"inputs": load_digits_data(0).test.X[:PREDICT_ROWS].tolist()}).encode()
        drive(port, path, token, 1.0, args.concurrency, body)  # warm-up: caches, connections, the model
        drive(port, TWIN_PREFIX + path, None, 1.0, args.concurrency, body)
        runs: dict[str, list[dict[str, float]]] = {"gated": [], "ungated": []}
        for i in range(args.slices):
            # Pairs of adjacent slices, the order swapped every pair: load from other processes drifts, and
            # each pair sees nearly the same machine.
            sides = ("gated", "ungated") if i % 2 == 0 else ("ungated", "gated")
            for side in sides:
                target, bearer = (path, token) if side == "gated" else (TWIN_PREFIX + path, None)
                runs[side].append(drive(port, target, bearer, args.seconds, args.concurrency, body))
        server.terminate()
        server.wait(timeout=10)
        admission_us = gate_alone(env, user, *GATES[args.endpoint])
    finally:
        server.terminate()
        server.wait(timeout=10)
        node.stop()

    def summary(side: str) -> dict[str, float]:
        rows = runs[side]
        return {
            key: statistics.median(r[key] for r in rows) for key in ("throughput_rps", "p50_ms", "p99_ms")
        } | {"requests": sum(r["requests"] for r in rows)}

    gated, ungated = summary("gated"), summary("ungated")
    pairs = list(zip(runs["gated"], runs["ungated"], strict=True))

    def paired(key: str, invert: bool = False) -> dict[str, float]:
        ratios = sorted((u[key] / g[key]) if invert else (g[key] / u[key]) for g, u in pairs)
        return {"median": statistics.median(ratios), "min": ratios[0], "max": ratios[-1]}

    report = {
        "endpoint": path,
        "concurrency": args.concurrency,
        "seconds_per_slice": args.seconds,
        "slices": args.slices,
        "gated": gated,
        "ungated": ungated,
        # Per adjacent pair of slices, gated over ungated (throughput: ungated over gated, so > 1 is a cost).
        "p50_ratio": paired("p50_ms"),
        "p99_ratio": paired("p99_ms"),
        "throughput_ratio": paired("throughput_rps", invert=True),
        "gate_alone_us": admission_us,
        "ungated_request_us": 1e6 / ungated["throughput_rps"],
        "goal": "gated/ungated <= 1.5",
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"endpoint {path}, {args.concurrency} connections, {args.slices} x {args.seconds:g}s per side")
        print("medians over slices:")
        print(f"{'':10}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>10}")
        for side, row in (("gated", gated), ("ungated", ungated)):
            print(f"{side:10}{row['p50_ms']:>10.2f}{row['p99_ms']:>10.2f}{row['throughput_rps']:>10.0f}")
        for key, label in (("p50_ratio", "p50"), ("p99_ratio", "p99"), ("throughput_ratio", "throughput")):
            r = report[key]
            print(f"cost of gating, {label:10}: x{r['median']:.2f} (pairs: {r['min']:.2f}..{r['max']:.2f})")
        print(
            f"the gate alone, in-process: {admission_us:.1f} us per admission "
            f"(an ungated request: {report['ungated_request_us']:.0f} us of server time at this load)"
        )
        print("goal: <= 1.5")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
