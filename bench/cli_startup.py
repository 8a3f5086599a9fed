"""How long `trustmarket` takes to start: help and simple commands, against the interpreter itself, in one run.

    python bench/cli_startup.py                 # 7 runs each, median
    python bench/cli_startup.py --repeat 15 --json

Each command runs as a fresh process (`python -m backend.cli ...` would skip the console script's import of
`backend.cli`, so the console script itself is timed), interleaved round by round with two baselines so both
sides of a ratio ran next to each other on a shared machine:

- `python -c pass`: the interpreter's own start, the floor of any Python CLI;
- `import web3, torch`: what every command paid before the sub-apps were loaded lazily (the old CLI imported all
  of them, and with them web3 and torch, before parsing its arguments).

The target (issue #16) is `--help` and simple commands under 1.5 s; `storage add --only-hash` hashes a small file
and needs no chain or store.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def commands(exe: str, sample: Path) -> dict[str, list[str]]:
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "import web3, torch": [sys.executable, "-c", "import web3, torch"],
        "trustmarket --help": [exe, "--help"],
        "trustmarket trainer --help": [exe, "trainer", "--help"],
        "trustmarket trainer register --help": [exe, "trainer", "register", "--help"],
        "trustmarket storage add --only-hash": [exe, "storage", "add", "--only-hash", str(sample)],
        "trustmarket verifier keygen": [
            exe,
            "verifier",
            "keygen",
            "--out",
            str(sample.parent / "k.json"),
            "--force",
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    exe = shutil.which("trustmarket", path=str(Path(sys.executable).parent)) or shutil.which("trustmarket")
    if exe is None:
        print("no trustmarket console script: run `make install`", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        sample = Path(tmp) / "sample.bin"
        sample.write_bytes(os.urandom(100_000))
        env = {**os.environ, "TRUSTMARKET_HOME": str(Path(tmp) / "home")}
        runs: dict[str, list[float]] = {name: [] for name in commands(exe, sample)}
        for _ in range(args.repeat):
            for name, cmd in commands(exe, sample).items():
                start = time.perf_counter()
                done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True)
                runs[name].append(time.perf_counter() - start)
                if done.returncode != 0:
                    print(f"{name} failed: {done.stderr.decode()[-500:]}", file=sys.stderr)
                    return 1
    medians = {name: statistics.median(times) for name, times in runs.items()}
    floor, old = medians["python -c pass"], medians["import web3, torch"]
    report = {
        name: {
            "median_s": round(m, 3),
            "x_interpreter": round(m / floor, 2),
            "x_web3_torch": round(m / old, 2),
        }
        for name, m in medians.items()
    }
    if args.json:
        print(json.dumps({"repeat": args.repeat, "load": os.getloadavg(), "commands": report}, indent=2))
        return 0
    print(f"median of {args.repeat} runs; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'command':40} {'median s':>9} {'x python':>9} {'x web3+torch':>13}")
    for name, row in report.items():
        print(f"{name:40} {row['median_s']:9.3f} {row['x_interpreter']:9.2f} {row['x_web3_torch']:13.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
