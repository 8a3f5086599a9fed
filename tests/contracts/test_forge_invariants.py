"""Forge's invariant fuzzing of the money rules (tests/forge/MarketInvariants.t.sol), run by `make test` through
this test: forge from npm (`@foundry-rs/forge-linux-amd64`, pinned in package.json) compiles offline through the
solc-js shim (foundry.toml), then fuzzes sealed rounds, finalizations, cancels, challenges and claims in any order
and checks after every call that the market's balance is deposits - payouts - burns and the sum of the escrows,
that no claim pays other than what was owed, and that nothing is claimed while a challenge is open or a round is
not final."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORGE = ROOT / "node_modules" / ".bin" / "forge"
INVARIANTS = {
    "invariant_balance_is_deposits_minus_payouts_and_burns",
    "invariant_balance_is_the_sum_of_the_escrows",
    "invariant_every_claim_pays_exactly_what_was_owed",
    "invariant_no_claim_while_challenged_or_not_final",
}

pytestmark = pytest.mark.slow


def test_the_money_rules_hold_under_forge_invariant_fuzzing():
    assert FORGE.exists(), (
        "forge is missing: `make install` installs it from npm (@foundry-rs/forge-linux-amd64)"
    )
    env = {**os.environ, "PATH": f"{ROOT / 'node_modules' / '.bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        [str(FORGE), "test", "--offline", "--root", str(ROOT), "--color", "never"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    passed = set(re.findall(r"\[PASS\] (\w+)\(\)", output))
    assert passed == INVARIANTS, output[-6000:]
    runs = [int(n) for n in re.findall(r"\(runs: (\d+), calls: \d+", output)]
    assert runs and min(runs) >= 32, "fuzzed too few runs to mean anything"
