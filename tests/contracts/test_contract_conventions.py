"""The contracts' conventions, checked on the sources and the compiled output: one pragma, each production
contract behind the interface it declares, every error and event documented (`@notice`, `@param` on each
argument, as OpenZeppelin's draft-IERC6093.sol does), no error name meaning two things, and TrainingMarket with
headroom under the EVM's code size limit."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from market_helpers import NO_COMMITTEE

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = ROOT / "contracts"
SOURCES = sorted(p for p in CONTRACTS.rglob("*.sol") if ".cache" not in p.parts)
# Each production contract and the interface holding its surface.
INTERFACES = {
    "TrainingMarket": "ITrainingMarket",
    "VerifierCommittee": "IVerifierCommittee",
    "AccessRegistry": "IAccessRegistry",
    "SourceRegistry": "ISourceRegistry",
}
# Functions production contracts take from OpenZeppelin bases rather than from their own interface.
INHERITED = {
    "grantRole",
    "revokeRole",
    "renounceRole",
    "hasRole",
    "getRoleAdmin",
    "supportsInterface",
    "eip712Domain",
    "nonces",
}
# TrainingMarket's budget: headroom under EIP-170's 24,576 bytes for what the next issues add.
MAX_TRAINING_MARKET_BYTES = 20_000


@pytest.fixture(scope="module")
def manifest(project):
    project.load_contracts()
    return json.loads((ROOT / ".build" / "__local__.json").read_text())["contractTypes"]


def _declarations(kind: str) -> dict[str, tuple[Path, str]]:
    """Every `error` or `event` declared in our sources: name -> (file, argument list)."""
    found: dict[str, tuple[Path, str]] = {}
    pattern = re.compile(rf"^\s*{kind} (\w+)\(([^;]*?)\);", re.M | re.S)
    for path in SOURCES:
        for match in pattern.finditer(path.read_text()):
            found.setdefault(match.group(1), (path, " ".join(match.group(2).split())))
    return found


def _doc_block(source: str, kind: str, name: str) -> str:
    """The /// lines right above `kind name(` in `source`."""
    lines = source.splitlines()
    index = next(i for i, line in enumerate(lines) if re.match(rf"\s*{kind} {name}\(", line))
    block = []
    for line in reversed(lines[:index]):
        if not line.strip().startswith("///"):
            break
        block.append(line.strip()[3:].strip())
    return " ".join(reversed(block))


def test_one_pragma_everywhere():
    pragmas = {path.relative_to(ROOT): re.findall(r"^pragma solidity ([^;]+);", path.read_text(), re.M)
               for path in SOURCES}  # fmt: skip
    assert {tuple(v) for v in pragmas.values()} == {("^0.8.30",)}, pragmas


@pytest.mark.parametrize("kind", ["error", "event"])
def test_every_error_and_event_is_documented(kind):
    undocumented = []
    for name, (path, arguments) in sorted(_declarations(kind).items()):
        doc = _doc_block(path.read_text(), kind, name)
        params = [a.split()[-1] for a in arguments.split(",") if a.strip()]
        missing = [p for p in params if f"@param {p} " not in doc + " "]
        if "@notice" not in doc or missing:
            undocumented.append(f"{path.relative_to(ROOT)}: {kind} {name} (missing {missing or '@notice'})")
    assert not undocumented, "\n".join(undocumented)


def test_no_error_name_means_two_things(manifest):
    """A name stands for one signature across every compiled contract (a selector for one error)."""
    signatures: dict[str, set[str]] = {}
    for ctype in manifest.values():
        for item in ctype["abi"]:
            if item["type"] == "error":
                types = ",".join(i["type"] for i in item["inputs"])
                signatures.setdefault(item["name"], set()).add(f"{item['name']}({types})")
    ambiguous = {name: sorted(sigs) for name, sigs in signatures.items() if len(sigs) > 1}
    assert not ambiguous


@pytest.mark.parametrize("contract", sorted(INTERFACES))
def test_each_contract_declares_its_interface(manifest, contract):
    interface = INTERFACES[contract]
    source = (CONTRACTS / f"{contract}.sol").read_text()
    assert re.search(rf"contract {contract} is\s[^{{]*\b(Market\w+|{interface})\b", source)
    declared = {i["name"] for i in manifest[interface]["abi"] if i["type"] == "function"}
    inherited_interfaces = {
        i["name"]
        for name, ctype in manifest.items()
        if name.startswith("I") and name != interface
        for i in ctype["abi"]
        if i["type"] == "function"
    }
    # Every transaction the contract accepts is part of its declared surface (views may be state getters).
    transactions = {
        i["name"]
        for i in manifest[contract]["abi"]
        if i["type"] == "function" and i["stateMutability"] in ("nonpayable", "payable")
    }
    assert transactions - declared - inherited_interfaces - INHERITED == set()


def test_training_market_leaves_headroom(project, accounts, chain):
    market = accounts[0].deploy(
        project.TrainingMarket, NO_COMMITTEE, NO_COMMITTEE
    )  # no committee, no forwarder
    size = len(chain.provider.web3.eth.get_code(market.address))
    assert 0 < size <= MAX_TRAINING_MARKET_BYTES, f"TrainingMarket is {size} bytes deployed"
