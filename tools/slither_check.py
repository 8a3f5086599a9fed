"""Slither over the contracts, as `make lint` runs it: every finding must be fixed or triaged with its reason.

Runs `slither contracts --solc-standard-json` through the solc-js shim (crytic-compile asks forge for the project's
configuration, so forge must be on PATH: the Makefile puts node_modules/.bin there), then compares the findings
with `slither-triage.json`. A finding is named by its detector and its description without line numbers,
so moving code keeps its triage and changing it asks for a new look. Exit 1 on an untriaged finding, and on a
triage entry that no longer matches anything (so the file never hides a finding that came back changed).

    python tools/slither_check.py            # check
    python tools/slither_check.py --update   # print the triage file's entries for the current findings
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRIAGE = ROOT / "slither-triage.json"
SHIM = ROOT / ".solcx" / "solc-v0.8.30"
# Ape 0.8 unpacks OpenZeppelin into contracts/.cache only while it compiles; node_modules holds the same package.
REMAP = "@openzeppelin/contracts=node_modules/@openzeppelin/contracts"
_LOCATION = re.compile(r" \([^()]*#\d+(?:-\d+)?\)")


def finding_key(result: dict) -> str:
    """`check: description` with source locations removed and whitespace folded."""
    text = _LOCATION.sub("", result["description"])
    return f"{result['check']}: {' '.join(text.split())}"


def run_slither() -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "slither.json"
        command = [
            "slither", "contracts", "--solc-standard-json", "--solc", str(SHIM), "--solc-remaps", REMAP,
            "--filter-paths", "node_modules|contracts/test|contracts/.cache", "--json", str(out),
        ]  # fmt: skip
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if not out.exists():
            sys.exit(f"slither did not run (exit {done.returncode}):\n{done.stderr[-4000:]}")
        report = json.loads(out.read_text())
    if not report.get("success"):
        sys.exit(f"slither failed: {report.get('error')}")
    return report["results"].get("detectors", [])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update", action="store_true", help="print triage entries for the current findings")
    args = parser.parse_args()
    findings = {finding_key(r): r for r in run_slither()}
    triaged = {entry["finding"]: entry for entry in json.loads(TRIAGE.read_text())["triaged"]}
    if args.update:
        entries = [
            {"finding": key, "impact": r["impact"], "reason": triaged.get(key, {}).get("reason", "TODO")}
            for key, r in sorted(findings.items())
        ]
        print(json.dumps({"triaged": entries}, indent=2))
        return 0
    new = sorted(set(findings) - set(triaged))
    stale = sorted(set(triaged) - set(findings))
    undecided = sorted(k for k, e in triaged.items() if k in findings and not e.get("reason", "").strip("TODO "))
    for key in new:
        print(f"untriaged slither finding ({findings[key]['impact']}): {key}")
    for key in stale:
        print(f"triaged finding no longer reported (remove it from {TRIAGE.name}): {key}")
    for key in undecided:
        print(f"triaged without a reason: {key}")
    print(f"slither: {len(findings)} findings, {len(findings) - len(new)} triaged ({TRIAGE.relative_to(ROOT)})")
    return 1 if new or stale or undecided else 0


if __name__ == "__main__":
    sys.exit(main())
