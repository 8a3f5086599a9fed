"""Start anvil (the npm package's binary) or attach to a node already serving the configured URL."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import requests

from backend.chain.errors import ChainError, ChainUnavailable
from backend.settings import project_root

__all__ = [
    "DEV_MNEMONIC",
    "Anvil",
    "advance_clock",
    "find_anvil",
    "free_port",
    "mine_at",
    "node_answers",
    "start_anvil",
]

# anvil's default mnemonic: its accounts are public knowledge, fit only for a local chain.
DEV_MNEMONIC = "test test test test test test test test test test test junk"


def find_anvil() -> Path:
    """anvil on PATH, else the project's `node_modules/.bin/anvil` (from `@foundry-rs/anvil-linux-amd64`)."""
    found = shutil.which("anvil")
    if found:
        return Path(found)
    local = project_root() / "node_modules" / ".bin" / "anvil"
    if local.exists():
        return local
    raise ChainError("anvil not found: run `make install` (npm package @foundry-rs/anvil-linux-amd64)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def node_answers(url: str, timeout: float = 1.0) -> int | None:
    """The chain id of the node at `url`, or None if nothing answers there."""
    try:
        reply = requests.post(
            url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}, timeout=timeout
        )
        return int(reply.json()["result"], 16)
    except (requests.RequestException, ValueError, KeyError, TypeError):
        return None


@dataclass
class Anvil:
    """A running anvil we started (stop it with `stop()` or use as a context manager)."""

    url: str
    process: subprocess.Popen | None = field(default=None, repr=False)
    log_path: Path | None = None

    @property
    def started_here(self) -> bool:
        return self.process is not None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None

    def __enter__(self) -> Anvil:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_anvil(
    url: str | None = None,
    *,
    chain_id: int = 31337,
    accounts: int = 20,
    balance_eth: int = 10_000,
    block_time: float | None = None,
    log_path: Path | None = None,
    attach: bool = True,
    timeout: float = 20.0,
    extra_args: Sequence[str] = (),
) -> Anvil:
    """Attach to a node at `url` if one answers (and `attach`), else start anvil there and wait until it serves."""
    url = url or f"http://127.0.0.1:{free_port()}"
    if attach and (existing := node_answers(url)) is not None:
        if existing != chain_id:
            raise ChainError(f"a node already serves chain {existing} at {url}, not chain {chain_id}")
        return Anvil(url=url)
    parsed = urlparse(url)
    if parsed.hostname not in {"127.0.0.1", "localhost"}:
        raise ChainError(f"nothing answers at {url}, and anvil can only be started on this machine")
    cmd = [
        str(find_anvil()),
        "--host", parsed.hostname,
        "--port", str(parsed.port or 8545),
        "--chain-id", str(chain_id),
        "--accounts", str(accounts),
        "--balance", str(balance_eth),
        "--mnemonic", DEV_MNEMONIC,
    ]  # fmt: skip
    if block_time:
        cmd += ["--block-time", str(block_time)]
    cmd += list(extra_args)
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - owned by the process
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    deadline = time.monotonic() + timeout
    while node_answers(url, timeout=0.5) is None:
        if process.poll() is not None:
            raise ChainUnavailable(f"anvil exited with code {process.returncode} before serving {url}")
        if time.monotonic() > deadline:
            process.kill()
            raise ChainUnavailable(f"anvil did not start serving {url} within {timeout:.0f}s")
        time.sleep(0.1)
    return Anvil(url=url, process=process, log_path=log_path)


def mine_at(client, timestamp: int) -> int:
    """Mine a block at chain time `timestamp` (if the chain is behind it) on a local chain; returns the chain's
    time. Local chains only: anvil's `evm_mine` takes the timestamp."""
    if client.chain_id not in (31337, 1337):
        raise ChainError(f"chain {client.chain_id} is not a local chain: its clock cannot be moved")
    now = client.timestamp()
    if now < timestamp:
        reply = client.w3.provider.make_request("evm_mine", [int(timestamp)])
        if "error" in reply:
            raise ChainError(f"the node at {client.url} refused to mine at {timestamp}: {reply['error']}")
        now = client.timestamp()
    return now


def advance_clock(client, seconds: int) -> int:
    """Mine a block `seconds` after the latest one on a local chain; returns the chain's time. Counted from the
    latest block, not from anvil's wall clock plus offset (`evm_increaseTime`): a chain that mines many blocks a
    second runs ahead of its wall clock (each block is at least its parent + 1 s), and an increase measured from
    the wall clock can then leave the chain short of a deadline set from its own time."""
    return mine_at(client, client.timestamp() + int(seconds))
