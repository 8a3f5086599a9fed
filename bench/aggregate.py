"""Aggregation rules at scale: Multi-Krum, coordinate median and trimmed mean on an `[n, d]` float32 matrix.

Each measurement runs in a fresh process (so peak RSS belongs to it alone) on the same seeded data, against
two baselines measured in the same run:

- the BLAS floor: one Gram matrix `X @ X.T` of the same data (what any distance-based rule must at least do);
- a straightforward reference like Flower's Krum (a Python loop over all n^2 pairs, `np.linalg.norm(x_i - x_j)`)
  and, for the coordinate rules, `np.median` / a full `np.sort` over the whole matrix. References slower than
  `--ref-budget` seconds are timed on a prefix (pairs, or columns) and extrapolated linearly (their cost per pair
  or per column does not depend on the data); the output says when it did.

Peak memory is the process's maximum RSS (`resource.getrusage`), which includes the interpreter and torch
libraries, divided by the input's size.

    python bench/aggregate.py                      # n=100, d=1M (a quick run)
    python bench/aggregate.py --n 100 --d 10000000 # the issue's size: 4 GB of input
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = ("floor", "multi_krum", "median", "trimmed_mean", "ref_krum", "ref_median", "ref_trimmed_mean")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _make(n: int, d: int, seed: int):
    import torch

    # Rows share a direction plus noise, like deltas of one round; filled a row at a time (no second copy).
    # The noise is one of 8 random vectors rotated by a row-specific shift: distinct rows for 9 randn draws
    # instead of n (drawing 10^9 normals would take longer than the rules being measured).
    x = torch.empty(n, d, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    common = torch.randn(d, generator=gen)
    pool = [torch.randn(d, generator=gen) for _ in range(8)]
    for i in range(n):
        x[i].copy_(pool[i % 8].roll(7919 * i)).mul_(0.5).add_(common)
    return x


def _worker(case: str, args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    sys.path.insert(0, str(ROOT))
    from aggregator.rules import get_rule

    if args.threads:
        torch.set_num_threads(args.threads)
    x = _make(args.n, args.d, args.seed)
    base = _rss_bytes()
    extrapolated = None
    start = time.perf_counter()
    if case == "floor":
        gram = x @ x.T
        assert gram.shape == (args.n, args.n)
    elif case in ("multi_krum", "median", "trimmed_mean"):
        params = {"multi_krum": {"f": args.f}, "trimmed_mean": {"beta": args.beta}}.get(case, {})
        result = get_rule(case, chunk=args.chunk, device="cpu", **params).aggregate(x)
        assert result.aggregate.shape == (args.d,)
    elif case == "ref_krum":
        flat = x.numpy()
        pairs = [(i, j) for i in range(args.n) for j in range(args.n)]
        dist = np.zeros((args.n, args.n))
        done = 0
        for i, j in pairs:
            dist[i, j] = np.linalg.norm(flat[i] - flat[j]) ** 2
            done += 1
            if time.perf_counter() - start > args.ref_budget:
                break
        if done < len(pairs):
            extrapolated = f"{done} of {len(pairs)} pairs"
        scale = len(pairs) / done
        elapsed = (time.perf_counter() - start) * scale
        return {"case": case, "seconds": elapsed, "extrapolated": extrapolated, **_memory(base, x)}
    elif case in ("ref_median", "ref_trimmed_mean"):
        flat = x.numpy()
        step = max(1, min(args.d, 1 << 18))
        done = 0
        k = int(args.beta * args.n)
        while done < args.d:
            part = flat[:, done : done + step]
            if case == "ref_median":
                np.median(part, axis=0)
            else:
                np.sort(part, axis=0)[k : args.n - k].mean(axis=0)
            done += part.shape[1]
            if time.perf_counter() - start > args.ref_budget:
                break
        if done < args.d:
            extrapolated = f"{done} of {args.d} columns"
        elapsed = (time.perf_counter() - start) * args.d / done
        return {"case": case, "seconds": elapsed, "extrapolated": extrapolated, **_memory(base, x)}
    else:
        raise SystemExit(f"unknown case {case}")
    return {"case": case, "seconds": time.perf_counter() - start, "extrapolated": None, **_memory(base, x)}


def _memory(base: int, x) -> dict:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return {"input_bytes": x.numel() * 4, "rss_after_input": base, "peak_rss": peak}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--d", type=int, default=1_000_000)
    parser.add_argument("--f", type=int, default=10, help="Multi-Krum's assumed attackers (m = n - f)")
    parser.add_argument("--beta", type=float, default=0.1, help="trimmed mean: fraction cut at each end")
    parser.add_argument("--chunk", type=int, default=1 << 17, help="columns per pass")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--ref-budget", type=float, default=60.0, help="seconds before a reference extrapolates"
    )
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--worker", choices=CASES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker, args)))
        return 0

    names = ("n", "d", "f", "beta", "chunk", "threads", "seed", "ref_budget")
    forwarded = [x for k in names for x in (f"--{k.replace('_', '-')}", str(getattr(args, k)))]
    results = {}
    for case in args.cases.split(","):
        proc = subprocess.run(
            [sys.executable, __file__, *forwarded, "--worker", case],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            print(f"{case}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            return 1
        results[case] = json.loads(proc.stdout.strip().splitlines()[-1])
    gb = args.n * args.d * 4 / 1e9
    print(
        f"n={args.n} d={args.d} float32 ({gb:.2f} GB) chunk={args.chunk} threads={args.threads or 'default'}"
    )
    floor = results.get("floor", {}).get("seconds")
    print(f"{'case':<18}{'seconds':>10}{'x floor':>10}{'peak RSS / input':>18}  note")
    for case, r in results.items():
        ratio = f"{r['seconds'] / floor:.2f}" if floor else "-"
        note = f"extrapolated from {r['extrapolated']}" if r["extrapolated"] else ""
        mem = r["peak_rss"] / r["input_bytes"]
        print(f"{case:<18}{r['seconds']:>10.2f}{ratio:>10}{mem:>18.2f}  {note}")
    for rule, ref in (
        ("multi_krum", "ref_krum"),
        ("median", "ref_median"),
        ("trimmed_mean", "ref_trimmed_mean"),
    ):
        if rule in results and ref in results:
            print(f"{rule}: {results[ref]['seconds'] / results[rule]['seconds']:.1f}x faster than {ref}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
