"""The API under load, restarts and several workers, on loopback: `python bench/api.py --load` runs this.

Everything is real and local: a private anvil with the contracts deployed; four dRAG source nodes (one process,
each behind `--source-latency` seconds of delay, as if remote) registered on SourceRegistry; the API as
`trustmarket api serve --workers W` starts it, reaching the node through a counting JSON-RPC proxy (so chain
calls per request are measured, not guessed); and a keep-alive load generator. Scenarios, each bounded in time
(`--seconds` per measurement) and count (at most `--flood` + 16 connections):

1. throughput and p50/p95/p99 of /v1/me, /v1/projects, login, RAG query and predict at 1, 4 and 16 clients;
2. /v1/me and /v1/projects while `--flood` RAG clients run, against their idle figures;
3. quota exactness: 16 clients on one wallet with a 500-unit daily quota;
4. SIGTERM mid-load, then a restart: 5xx, responses cut, downtime, quota units charged after the restart;
5. over the whole run: audit rows against responses seen, dRAG observations credited on chain against those
   queued (a double-counted batch shows as more on chain than was ever queued), chain calls per /v1/projects.

Goals (from issue #19): RAG throughput x3 from 1 to 4 clients, cheap routes within 2x of idle under the flood,
at most 2 chain calls per /v1/projects request, 0 double-counted observations, 0 quota units lost to a restart,
0 5xx.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = "bench secret, long enough for HS256 signing keys"
QUOTA_UNITS = 500
COSTS = {"/v1/rag/sources": 1, "/v1/projects": 1, "/v1/rag/query": 10, "/v1/projects/1/predict": 5}
PREDICT_ROWS = 16
SOURCES = 4
HISTORY = (
    8_000,
    1_000,
)  # each source's record before the run: 8 positive, 1 negative observation (SCALE 1000)


# -- load generator ----------------------------------------------------------------------------------------------


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    cut: int = 0  # requests sent whose connection closed before an answer (or could not connect)

    def summary(self, elapsed: float) -> dict:
        lat = sorted(self.latencies)

        def pct(q: float) -> float:
            return 1000 * lat[min(len(lat) - 1, int(len(lat) * q))] if lat else float("nan")

        return {
            "requests": len(lat),
            "throughput_rps": len(lat) / elapsed,
            "p50_ms": pct(0.50),
            "p95_ms": pct(0.95),
            "p99_ms": pct(0.99),
            "statuses": dict(sorted(self.statuses.items())),
            "cut": self.cut,
        }


def http_request(port: int, method: str, path: str, token: str | None, body: bytes | None = None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    if body is None:
        return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}\r\n".encode()
    return (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _client(port: int, next_request: Callable[[], bytes], stop_at: float, tally: Tally) -> None:
    reader = writer = None
    while time.perf_counter() < stop_at:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                request = next_request()
            except StopIteration:  # a finite supply (signed logins) ran out: this client is done
                break
            started = time.perf_counter()
            writer.write(request)
            await writer.drain()
            assert reader is not None
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length, close = 0, False
            for line in head.split(b"\r\n"):
                lower = line.lower()
                if lower.startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
                elif lower.startswith(b"connection:") and b"close" in lower:
                    close = True
            await reader.readexactly(length)
            tally.latencies.append(time.perf_counter() - started)
            tally.statuses[status] += 1
            if close:
                writer.close()
                reader = writer = None
        except (OSError, asyncio.IncompleteReadError, ConnectionError):
            tally.cut += 1
            if writer is not None:
                writer.close()
            reader = writer = None
            await asyncio.sleep(0.05)
    if writer is not None:
        writer.close()


async def run_clients(
    port: int, groups: list[tuple[int, Callable[[], bytes], Tally]], seconds: float
) -> float:
    stop_at = time.perf_counter() + seconds
    started = time.perf_counter()
    await asyncio.gather(*(_client(port, nxt, stop_at, t) for n, nxt, t in groups for _ in range(n)))
    return time.perf_counter() - started


class Flood:
    """`clients` dRAG clients in a process of their own for `seconds` (a flood comes from other people's machines:
    sharing the measuring clients' event loop would time the load generator's own queue, not the API). The CPU
    is still this machine's: the flood's share of the two cores is counted, only the shared loop is not."""

    def __init__(self, port: int, token: str, questions: list[str], clients: int, seconds: float):
        spec = json.dumps({"port": port, "token": token, "questions": questions, "clients": clients,
                           "seconds": seconds})  # fmt: skip
        self.process = subprocess.Popen([sys.executable, __file__, "--flood-process"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, cwd=ROOT)  # fmt: skip
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(spec + "\n")
        self.process.stdin.flush()
        assert self.process.stdout.readline().strip() == "flooding"

    def result(self) -> dict:
        out, _ = self.process.communicate(timeout=120)
        result = json.loads(out)
        result["statuses"] = {int(status): n for status, n in result["statuses"].items()}
        return result


def rag_requests(port: int, token: str, questions: list[str]) -> Callable[[], bytes]:
    """dRAG queries over `questions` in turn, as many as asked for."""
    asked = itertools.count()

    def rag_request() -> bytes:
        body = json.dumps({"question": questions[next(asked) % len(questions)]}).encode()
        return http_request(port, "POST", "/v1/rag/query", token, body)

    return rag_request


def run_flood_process() -> None:
    spec = json.loads(sys.stdin.readline())
    rag_request = rag_requests(spec["port"], spec["token"], spec["questions"])

    async def flood() -> float:
        tasks = asyncio.ensure_future(
            run_clients(spec["port"], [(spec["clients"], rag_request, tally)], spec["seconds"])
        )
        await asyncio.sleep(0.5)  # every client has its first query in flight before the measurement starts
        print("flooding", flush=True)
        return await tasks

    tally = Tally()
    elapsed = asyncio.run(flood())
    print(json.dumps(tally.summary(elapsed)), flush=True)


def drive(port: int, next_request: Callable[[], bytes], clients: int, seconds: float) -> dict:
    tally = Tally()
    elapsed = asyncio.run(run_clients(port, [(clients, next_request, tally)], seconds))
    return tally.summary(elapsed)


# -- the counting JSON-RPC proxy -----------------------------------------------------------------------------------


class RpcProxy:
    """Forwards JSON-RPC to the node and counts methods: what the API really asks of the chain. It runs in a
    process of its own, so the load generator's work never slows the API's chain reads."""

    def __init__(self, upstream: str):
        import httpx

        from backend.chain.anvil import free_port

        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen([sys.executable, __file__, "--proxy", upstream, str(port)], cwd=ROOT)
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{self.url}/counts", timeout=1).raise_for_status()
                return
            except httpx.HTTPError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the RPC proxy did not start") from None
                time.sleep(0.1)

    @property
    def counts(self) -> Counter:
        import httpx

        return Counter(httpx.get(f"{self.url}/counts", timeout=10).json())

    def total(self) -> int:
        return sum(self.counts.values())

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def serve_proxy(upstream: str, port: int) -> None:
    import httpx
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    counts: Counter = Counter()
    client = httpx.AsyncClient(base_url=upstream, timeout=60)

    async def forward(request: Request) -> Response:
        body = await request.body()
        try:
            payload = json.loads(body)
            methods = [p["method"] for p in payload] if isinstance(payload, list) else [payload["method"]]
        except (ValueError, KeyError, TypeError):
            methods = ["?"]
        counts.update(methods)
        reply = await client.post("/", content=body, headers={"Content-Type": "application/json"})
        return Response(reply.content, status_code=reply.status_code, media_type="application/json")

    async def report(_request: Request) -> Response:
        return JSONResponse(dict(counts))

    app = Starlette(routes=[Route("/", forward, methods=["POST"]), Route("/counts", report)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# -- the source nodes (a process of their own) ---------------------------------------------------------------------


def serve_nodes(spec_path: str) -> None:
    """Four source nodes, each behind a fixed delay, on the ports the spec names; runs until killed."""
    from eth_account import Account

    from backend.settings import Settings
    from rag.index import HybridIndex
    from rag.node import SourceNode, create_node_app
    from rag.serve import BackgroundServer
    from rag.service import embedder_for
    from rag.signing import SigningDomain

    spec = json.loads(Path(spec_path).read_text())
    embedder = embedder_for(Settings())
    domain = SigningDomain(spec["chain_id"], spec["registry"])
    servers = []
    for source in spec["sources"]:
        corpus = _corpus_share(source["index"])
        node = SourceNode(corpus, HybridIndex(corpus, embedder), Account.from_key(source["key"]),
                          source["id"], domain)  # fmt: skip
        app = create_node_app(node)
        latency = float(spec["latency"])

        async def remote(scope, receive, send, app=app, latency=latency):
            if scope["type"] == "http":
                await asyncio.sleep(latency)
            await app(scope, receive, send)

        servers.append(BackgroundServer(remote, "127.0.0.1", source["port"]).start(timeout=120))  # type: ignore[arg-type]
    print("nodes ready", flush=True)
    while True:
        time.sleep(3600)


def _corpus_share(index: int):
    """Source i holds a window of the packaged SQuAD paragraphs overlapping its neighbours' (so they agree)."""
    from rag.corpus import Corpus, load_corpus

    full = load_corpus()
    docs = full.documents[index * 10 : index * 10 + 30]
    ids = {d.doc_id for d in docs}
    return Corpus(tuple(docs), tuple(q for q in full.questions if q.doc_id in ids))


# -- set-up ------------------------------------------------------------------------------------------------------


def _setup(home: Path, latency: float):
    from eth_utils import keccak

    from backend.chain.access_registry import AccessRegistry, decision_ref
    from backend.chain.anvil import advance_clock, free_port, start_anvil
    from backend.chain.artifacts import Artifacts
    from backend.chain.client import ChainClient
    from backend.chain.deploy import deploy_contracts
    from backend.chain.keys import dev_account
    from backend.chain.source_registry import FeedbackEntry, SourceRegistry

    sys.path.insert(0, str(ROOT / "bench"))
    from api import _project  # the gate benchmark's project 1 (digits_mlp): predict's model

    node = start_anvil(attach=False)
    client = ChainClient(node.url, Artifacts.load(ROOT / ".build" / "__local__.json"))
    admin = dev_account(0, 31337)
    client.deployments = deploy_contracts(
        client, admin, network="ethereum:local:foundry",
        names=("TrainingMarket", "AccessRegistry", "SourceRegistry"),
    )  # fmt: skip
    client.deployments.save(home / "deployments" / "local.json")
    access = AccessRegistry(client)
    terms = keccak(text="bench terms")
    access.publish_terms(admin, terms, "ipfs://bench")
    users = {"load": dev_account(1, 31337), "quota": dev_account(8, 31337)}
    for name, tier in (("load", 3), ("quota", 2)):
        user = users[name]
        access.set_tier(admin, user.address, tier, client.timestamp() + 86_400, decision_ref("bench"))
        deadline = client.timestamp() + 3600
        access.accept_terms_for(
            admin, user.address, terms, deadline, access.sign_acceptance(user, terms, deadline)
        )
    _project(client, home)
    registry = SourceRegistry(client)
    spec = {"chain_id": 31337, "registry": registry.address, "latency": latency, "sources": []}
    for i in range(SOURCES):
        operator, port = dev_account(4 + i, 31337), free_port()
        corpus = _corpus_share(i)
        sid = registry.register(operator, f"http://127.0.0.1:{port}", corpus.commitment, registry.min_bond())
        spec["sources"].append({"id": sid, "index": i, "port": port, "key": operator.key.to_0x_hex()})
    (home / "nodes.json").write_text(json.dumps(spec))
    # A history (what canaries would have taught an evaluator), then a fresh epoch: newcomers' votes weigh
    # nothing, so without a record users' queries would queue no feedback and the double-count check would
    # hold vacuously.
    registry.apply_feedback(admin, registry.batches() + 1,
                            [FeedbackEntry(s["id"], *HISTORY) for s in spec["sources"]])  # fmt: skip
    advance_clock(client, registry.epoch_length() + 1)
    questions = [q.question for i in range(SOURCES) for q in _corpus_share(i).questions[:20]]
    _warm_embeddings(home, questions)
    return node, client, users, questions


def _warm_embeddings(home: Path, questions: list[str]) -> None:
    """Embed every text a query can touch into the shared cache first: the bench measures the steady state of
    a service whose corpus is known, not the first sight of each sentence."""
    from backend.settings import Settings
    from rag.service import embedder_for
    from rag.text import split_sentences

    texts = set(questions)
    for i in range(SOURCES):
        for doc in _corpus_share(i).documents:
            texts.add(f"{doc.title}. {doc.text}" if doc.title else doc.text)
            texts.update(split_sentences(doc.text))
    embedder_for(Settings(home=home)).encode(sorted(texts))


def _env(home: Path, chain_url: str, port: int) -> dict[str, str]:
    tiers = {
        "0": {"name": "none", "requests_per_minute": 10**9, "daily_units": 100},
        "2": {"name": "quota", "scopes": ["rag:sources"], "requests_per_minute": 10**9,
              "daily_units": QUOTA_UNITS},
        "3": {"name": "bench", "scopes": ["projects:read", "models:predict", "rag:query", "rag:sources"],
              "max_predict_rows": PREDICT_ROWS, "max_query_chars": 2000, "requests_per_minute": 10**9,
              "daily_units": 10**12},
    }  # fmt: skip
    return {
        **os.environ,
        "TRUSTMARKET_HOME": str(home),
        "TRUSTMARKET_CHAIN_URL": chain_url,
        "TRUSTMARKET_CHAIN_ID": "31337",
        "TRUSTMARKET_DEPLOYMENTS_DIR": str(home / "deployments"),
        "TRUSTMARKET_API_JWT_SECRET": SECRET,
        "TRUSTMARKET_API_SIWE_DOMAIN": f"127.0.0.1:{port}",
        "TRUSTMARKET_API_TIERS": json.dumps(tiers),
        "TRUSTMARKET_API_RELAYER_DEV_ACCOUNT": "0",  # the deployer: an evaluator, so feedback goes on chain
        "TRUSTMARKET_API_FEEDBACK_FLUSH_S": "1",
        "TRUSTMARKET_API_RAG_QUEUE": "256",
    }


class ApiProcess:
    def __init__(self, env: dict[str, str], port: int, workers: int):
        self.env, self.port, self.workers = env, port, workers
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 180) -> float:
        """Start `trustmarket api serve`; seconds until /healthz answers."""
        import httpx

        started = time.monotonic()
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "trustmarket"), "api", "serve", "--port", str(self.port),
             "--workers", str(self.workers), "--log-level", "warning"],
            env=self.env, cwd=ROOT, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() - started > timeout:
                raise SystemExit("the API did not start")
            time.sleep(0.05)

    def sigterm(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 60) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)


def signed_logins(port: int, user, count: int) -> list[bytes]:
    """`count` ready-to-send login requests, each with its own server nonce and SIWE signature."""
    import warnings
    from datetime import UTC, datetime

    import httpx
    from eth_account import Account
    from eth_account.messages import encode_defunct

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*redefines.*")
        import siwe

    base = f"http://127.0.0.1:{port}"
    requests = []
    with httpx.Client(base_url=base) as http:
        for _ in range(count):
            nonce = http.post("/v1/auth/nonce").json()
            message = siwe.SiweMessage(
                domain=nonce["domain"], address=user.address, uri=base, version="1", chain_id=nonce["chain_id"],
                issued_at=datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"), nonce=nonce["nonce"],
            ).prepare_message()  # fmt: skip
            signature = Account.sign_message(encode_defunct(text=message), user.key).signature.to_0x_hex()
            body = json.dumps({"message": message, "signature": signature}).encode()
            requests.append(http_request(port, "POST", "/v1/auth/login", None, body))
    return requests


def token_of(port: int, user) -> str:
    import httpx

    reply = httpx.post(f"http://127.0.0.1:{port}/v1/auth/login", content=signed_logins(port, user, 1)[0].split(b"\r\n\r\n", 1)[1],
                       headers={"Content-Type": "application/json"})  # fmt: skip
    reply.raise_for_status()
    return reply.json()["access_token"]


# -- checks over the whole run -------------------------------------------------------------------------------------


def audit_rows(home: Path) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{home / 'trustmarket.db'}")
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM api_audit")).scalar() or 0)
    finally:
        engine.dispose()


def units_charged(home: Path, wallet: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{home / 'trustmarket.db'}")
    try:
        with engine.connect() as conn:
            return int(conn.execute(
                text("SELECT coalesce(sum(used), 0) FROM api_usage WHERE wallet = :w AND \"window\" = 'day'"),
                {"w": wallet},
            ).scalar() or 0)  # fmt: skip
    finally:
        engine.dispose()


def feedback_totals(home: Path, client) -> dict:
    """Per source: observations queued (fixed point), still pending, and credited on chain; double-counted
    is what the chain holds beyond what was ever queued less what still waits."""
    from sqlalchemy import create_engine, text

    from backend.chain.source_registry import PRIOR_NEGATIVE, PRIOR_POSITIVE, SourceRegistry

    engine = create_engine(f"sqlite:///{home / 'trustmarket.db'}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT u.source_id, u.positive, u.negative, u.query_id, b.status FROM rag_feedback_updates u "
                "LEFT JOIN rag_feedback_batches b ON u.batch_id = b.id"
            )).all()  # fmt: skip
            batches = dict(
                conn.execute(text("SELECT status, count(*) FROM rag_feedback_batches GROUP BY status")).all()
            )
    finally:
        engine.dispose()
    registry = SourceRegistry(client)
    report, double = {}, 0
    for sid in range(1, SOURCES + 1):
        queued = sum(r[1] + r[2] for r in rows if r[0] == sid and not r[3].startswith("carry:"))
        pending = sum(r[1] + r[2] for r in rows if r[0] == sid and r[4] != "applied")
        rel = registry.reliability(sid)
        credited = (rel.alpha - PRIOR_POSITIVE - HISTORY[0]) + (rel.beta - PRIOR_NEGATIVE - HISTORY[1])
        double += max(0, credited + pending - queued)
        report[sid] = {"queued": queued, "pending": pending, "credited": credited}
    return {"sources": report, "batches": batches, "double_counted_units": double}


# -- the run -------------------------------------------------------------------------------------------------------


def run(args) -> dict:
    from backend.chain.anvil import free_port

    home = Path(tempfile.mkdtemp(prefix="trustmarket-bench-load-"))
    node, client, users, questions = _setup(home, args.source_latency)
    proxy = RpcProxy(node.url)
    port = free_port()
    env = _env(home, proxy.url, port)
    # The nodes stand for remote machines: their CPU must not count against the API's, so they run last in line.
    nodes = subprocess.Popen(["chrt", "--idle", "0", sys.executable, __file__, "--nodes", str(home / "nodes.json")],
                             env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)  # fmt: skip
    api = ApiProcess(env, port, args.workers)
    seen = Counter()  # every answer the API gave, by route: compared with the audit log at the end
    spent = Counter()  # units the load wallets were charged by answers (200s)
    report: dict = {"workers": args.workers, "seconds": args.seconds, "source_latency_s": args.source_latency,
                    "flood": args.flood, "load_average": os.getloadavg()[0]}  # fmt: skip
    try:
        assert nodes.stdout is not None and "nodes ready" in nodes.stdout.readline()
        report["start_s"] = api.start()
        token, quota_token = token_of(port, users["load"]), token_of(port, users["quota"])
        seen["/v1/auth/login"] += 2
        seen["/v1/auth/nonce"] += 2
        from aggregator.data import load_digits_data

        rows = json.dumps({"inputs": load_digits_data(0).test.X[:PREDICT_ROWS].tolist()}).encode()
        rag_request = rag_requests(port, token, questions)

        routes: dict[str, Callable[[], bytes]] = {
            "/v1/me": lambda: http_request(port, "GET", "/v1/me", token),
            "/v1/projects": lambda: http_request(port, "GET", "/v1/projects", token),
            "/v1/projects/1/predict": lambda: http_request(
                port, "POST", "/v1/projects/1/predict", token, rows
            ),
            "/v1/rag/query": rag_request,
        }

        def account(path: str, result: dict) -> dict:
            ok = result["statuses"].get(200, 0)
            seen[path] += result["requests"]
            spent["load"] += ok * COSTS.get(path, 0)
            return result

        for (
            path,
            make,
        ) in routes.items():  # warm every worker: the model, its dRAG compute process, the caches
            account(path, drive(port, make, 4 * args.workers, 2.0 * args.workers))
        # 1. each route at 1, 4, 16 clients
        latency = report["routes"] = {}
        measured = {**routes, "/v1/auth/login": None}
        if args.only == "flood":
            measured = {p: routes[p] for p in ("/v1/me", "/v1/projects")}
        for path, make in measured.items():
            latency[path] = {}
            for clients in (1, 4, 16):
                if make is None:
                    logins = iter(signed_logins(port, users["load"], args.logins))
                    seen["/v1/auth/nonce"] += args.logins
                    make_login = lambda logins=logins: next(logins)  # noqa: E731
                    result = drive(port, make_login, clients, args.seconds)
                else:
                    before = proxy.total()
                    result = drive(port, make, clients, args.seconds)
                    if path == "/v1/projects":
                        result["chain_calls_per_request"] = (proxy.total() - before) / max(
                            1, result["requests"]
                        )
                latency[path][clients] = account(path, result)
        # 2. cheap routes under a RAG flood
        flood = report["flood_run"] = {}
        for path in ("/v1/me", "/v1/projects"):
            idle = latency[path][4]["throughput_rps"]
            # The flood runs half a second longer on each side than the measurement, which it wholly covers.
            rag = Flood(port, token, questions, args.flood, args.seconds + 1.0)
            under = account(path, drive(port, routes[path], 4, args.seconds))
            flood_rag = account("/v1/rag/query", rag.result())
            flood[path] = {"idle_rps": idle, "under_flood_rps": under["throughput_rps"],
                           "slowdown": idle / max(under["throughput_rps"], 1e-9), "p50_ms": under["p50_ms"],
                           "rag_rps": flood_rag["throughput_rps"], "rag_statuses": flood_rag["statuses"]}  # fmt: skip
        if args.only == "flood":
            return report
        # 3. quota exactness: 16 clients until the 500-unit quota is spent (and refused), at most 60 s
        quota = Tally()
        make_quota = lambda: http_request(port, "GET", "/v1/rag/sources", quota_token)  # noqa: E731
        elapsed = 0.0
        while not quota.statuses.get(429) and elapsed < 60:
            elapsed += asyncio.run(run_clients(port, [(16, make_quota, quota)], args.seconds))
        quota_result = quota.summary(elapsed)
        seen["/v1/rag/sources"] += quota_result["requests"]
        report["quota"] = {"limit": QUOTA_UNITS, "admitted": quota_result["statuses"].get(200, 0),
                           "refused_429": quota_result["statuses"].get(429, 0)}  # fmt: skip
        # 4. SIGTERM mid-load, then a restart
        term, term_rag = Tally(), Tally()

        async def with_sigterm() -> float:
            async def later() -> None:
                await asyncio.sleep(args.seconds / 2)
                api.sigterm()

            started = time.perf_counter()
            await asyncio.gather(
                later(), run_clients(port, [(16, routes["/v1/projects"], term), (4, rag_request, term_rag)],
                                     args.seconds),
            )  # fmt: skip
            return time.perf_counter() - started

        elapsed = asyncio.run(with_sigterm())
        exit_code = api.wait()
        units_after_stop = units_charged(home, users["load"].address)
        for path, tally in (("/v1/projects", term), ("/v1/rag/query", term_rag)):
            account(path, tally.summary(elapsed))
        restart_s = api.start()
        report["sigterm"] = {"exit_code": exit_code, "projects": term.summary(elapsed),
                             "rag": term_rag.summary(elapsed), "restart_s": restart_s}  # fmt: skip
        # 5. whole-run checks (after the API stopped: its lifespan has handed quota blocks back)
        api.stop()
        statuses = Counter()
        for route in latency.values():
            for result in route.values():
                statuses.update(result["statuses"])
        for tally in (term, term_rag, quota):
            statuses.update(tally.statuses)
        report["checks"] = {
            "responses_seen": sum(seen.values()),
            "audit_rows": audit_rows(home),
            "5xx": sum(n for s, n in statuses.items() if s >= 500) + sum(
                n for f in flood.values() for s, n in f["rag_statuses"].items() if int(s) >= 500),
            "load_units_answered": spent["load"],
            "load_units_charged": units_charged(home, users["load"].address),
            "load_units_charged_at_sigterm": units_after_stop,
            "quota_units_charged": units_charged(home, users["quota"].address),
            "feedback": feedback_totals(home, client),
            "rpc_methods": dict(proxy.counts.most_common(8)),
        }  # fmt: skip
    finally:
        api.stop()
        nodes.terminate()
        nodes.wait(timeout=30)
        proxy.stop()
        node.stop()
    return report


def render(report: dict) -> None:
    if "sigterm" not in report:  # --only flood
        print(json.dumps(report["flood_run"], indent=2))
        return
    print(f"{report['workers']} worker(s), {report['seconds']:g} s per measurement, sources "
          f"{1000 * report['source_latency_s']:.0f} ms away, load average {report['load_average']:.1f} at start")  # fmt: skip
    print(f"{'route':28}{'clients':>8}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}  statuses")
    for path, by_clients in report["routes"].items():
        for clients, r in by_clients.items():
            extra = (
                f"  chain calls/request {r['chain_calls_per_request']:.2f}"
                if "chain_calls_per_request" in r
                else ""
            )
            print(f"{path:28}{clients:>8}{r['throughput_rps']:>9.1f}{r['p50_ms']:>9.1f}{r['p95_ms']:>9.1f}"
                  f"{r['p99_ms']:>9.1f}  {r['statuses']}{extra}")  # fmt: skip
    rag = report["routes"]["/v1/rag/query"]
    print(
        f"RAG throughput 4 vs 1 clients: x{rag[4]['throughput_rps'] / rag[1]['throughput_rps']:.2f} (goal >= 3)"
    )
    for path, f in report["flood_run"].items():
        print(f"{path} under {report['flood']} RAG clients: {f['under_flood_rps']:.1f} req/s vs {f['idle_rps']:.1f} idle "
              f"(x{f['slowdown']:.2f} slower, goal <= 2; p50 {f['p50_ms']:.1f} ms; RAG {f['rag_rps']:.1f} q/s {f['rag_statuses']})")  # fmt: skip
    q = report["quota"]
    print(
        f"quota: {q['admitted']} of {q['limit']} units admitted from 16 clients, {q['refused_429']} refused"
    )
    t = report["sigterm"]
    print(f"SIGTERM mid-load: exit {t['exit_code']}, /v1/projects {t['projects']['statuses']} cut {t['projects']['cut']}, "
          f"RAG {t['rag']['statuses']} cut {t['rag']['cut']}; restarted in {t['restart_s']:.1f} s")  # fmt: skip
    c = report["checks"]
    print(f"audit rows {c['audit_rows']} for {c['responses_seen']} responses; 5xx: {c['5xx']}")
    print(f"units: load wallet answered {c['load_units_answered']}, charged {c['load_units_charged']} after the "
          f"last stop ({c['load_units_charged_at_sigterm']} right after SIGTERM); quota wallet charged "
          f"{c['quota_units_charged']} of {q['admitted']} admitted")  # fmt: skip
    fb = c["feedback"]
    print(f"dRAG feedback: batches {fb['batches']}, double-counted units {fb['double_counted_units']}")
    print(f"RPC methods: {c['rpc_methods']}")


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="The API under load (see bench/api_load.py).")
    parser.add_argument("--workers", type=int, default=1, help="API worker processes")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one measurement")
    parser.add_argument("--source-latency", type=float, default=0.2, help="delay in front of every source")
    parser.add_argument("--flood", type=int, default=48, help="RAG clients in the flood scenario")
    parser.add_argument(
        "--logins", type=int, default=400, help="signed logins prepared per login measurement"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--only", choices=("flood",), help="run one scenario alone (quick iterations)")
    parser.add_argument("--nodes", help=argparse.SUPPRESS)
    parser.add_argument("--flood-process", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--proxy", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.proxy:
        serve_proxy(args.proxy[0], int(args.proxy[1]))
        return 0
    if args.nodes:
        serve_nodes(args.nodes)
        return 0
    if args.flood_process:
        run_flood_process()
        return 0
    report = run(args)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        render(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
