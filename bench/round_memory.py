"""Rounds bigger than memory: peak RSS and time of a whole round (`run_round`) over update files on disk.

Cases, each in a fresh process so its peak RSS (`ru_maxrss`, interpreter and torch included) is its own:

- `round`: `n` updates of a `d`-parameter model written as safetensors files (one tensor per layer, as trainers
  upload them), opened as `SafetensorsRow`s and run through the whole round: per-row checks and hashes, outlier
  statistics, the rule, leave-one-out valuation (n + 1 subset models, each evaluated) and the new model's
  encoding. Baselines in the same run: the bytes of the updates (n x d x 4: what stacking them would hold, and
  about half of what the in-memory path peaks at), and one sequential read of every file (the I/O floor).
- `digest`: a small round computed from the same updates held in memory (state dicts, the in-memory path) and
  from files: the two digests must be equal.
- `scan --reader mmap|pread`: one pass over every file a chunk at a time, through safetensors' memory map
  (`safe_open(...).get_slice`) or through positioned reads into a reused buffer: why the rows are not mapped.

The model is `builtin:mlp` on synthetic data with 1,000 features and 10 classes, its hidden width chosen to give
`d` parameters (a 50M model: hidden 49,455). Update files go to `--dir` (removed afterwards unless `--keep`).

    nice python bench/round_memory.py                              # 40 x 50M (8 GB on disk): the issue's case
    nice python bench/round_memory.py --sweep                      # RSS and time against n and d as well
    nice python bench/round_memory.py --n 8 --d 5000000 --quick    # a minute
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FEATURES, CLASSES, VALIDATION = 1000, 10, 200


def _hidden(d: int) -> int:
    # builtin:mlp = Linear(F, H) + Linear(H, C): (F + 1) H + (H + 1) C parameters.
    return max(1, round((d - CLASSES) / (FEATURES + 1 + CLASSES)))


def _setup(d: int):
    sys.path.insert(0, str(ROOT))
    import torch

    from aggregator.evaluation import Evaluator
    from aggregator.examples import Examples
    from aggregator.models.base import ModelContext
    from aggregator.models.sources import ModelSource, build

    gen = torch.Generator().manual_seed(7)
    X = torch.rand(VALIDATION, FEATURES, generator=gen)
    y = torch.randint(0, CLASSES, (VALIDATION,), generator=gen)
    source = ModelSource("builtin", "mlp", options={"hidden": _hidden(d)})
    model = build(source, ModelContext("classification", CLASSES, (FEATURES,)), seed=0)
    return model, Evaluator(model, "classification", Examples(y, features=X))


def _write_updates(folder: Path, n: int, d: int) -> dict:
    """`n` update files: one common direction plus a row-specific mix of a few noise vectors (distinct rows
    without drawing n x d normals), the last two scaled up as attackers."""
    import torch
    from safetensors.torch import save_file

    model, _ = _setup(d)
    spec = model.spec
    dim = sum(int(torch.Size(shape).numel()) for shape, _ in spec.values())
    gen = torch.Generator().manual_seed(11)
    common = torch.randn(dim, generator=gen) * 1e-3
    pool = [torch.randn(dim, generator=gen) * 1e-3 for _ in range(4)]
    start = time.perf_counter()
    for i in range(n):
        row = common + 0.5 * pool[i % 4].roll(7919 * i)
        if i >= n - 2:
            row *= 20.0
        state, offset = {}, 0
        for name, (shape, _) in spec.items():
            size = int(torch.Size(shape).numel())
            state[name] = row[offset : offset + size].reshape(shape).contiguous()
            offset += size
        save_file(state, str(folder / f"update-{i:03d}.safetensors"))
        del row, state
    return {"dim": dim, "write_s": time.perf_counter() - start, "bytes": n * dim * 4}


def _peak_rss() -> int:
    """This process's peak RSS (VmHWM). Not `ru_maxrss`: Linux carries that across exec, so a worker started by
    a parent that held the generated updates would report the parent's peak."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _inputs(evaluator, model, updates, rule: str, f: int, chunk: int, method: str, permutations: int):
    from aggregator.contribution import ContributionConfig
    from aggregator.outliers import OutlierConfig
    from aggregator.pipeline import RoundInputs

    return RoundInputs(
        evaluator=evaluator,
        global_state=model.initial_state(),
        updates=updates,
        rule=rule,
        rule_params={"f": f, "chunk": chunk} if rule in ("multi_krum", "bulyan") else {"chunk": chunk},
        outliers=OutlierConfig(chunk=chunk),
        contribution=ContributionConfig(method=method, max_permutations=permutations),
    )


def _worker(args: argparse.Namespace) -> dict:
    import torch

    from aggregator.pipeline import run_round
    from aggregator.rows import SafetensorsRow

    folder = Path(args.dir)
    files = sorted(folder.glob("update-*.safetensors"))[: args.n]
    base = _peak_rss()
    model, evaluator = _setup(args.d)
    names = list(model.spec)
    if args.case == "scan":
        return _scan(files, names, args, base)
    if args.case == "floor":
        start = time.perf_counter()
        buf = bytearray(1 << 22)
        for path in files:
            with open(path, "rb", buffering=0) as fh:
                while fh.readinto(buf):
                    pass
        return {"case": "floor", "seconds": time.perf_counter() - start, "peak_rss": _peak_rss()}
    rows = {f"0x{i + 1:040x}": SafetensorsRow.open(p, names) for i, p in enumerate(files)}
    if args.case == "digest":
        from safetensors.torch import load_file

        in_memory = {t: load_file(str(p)) for t, p in zip(rows, files, strict=True)}
        inputs = _inputs(
            evaluator, model, in_memory, args.rule, args.f, args.chunk, args.method, args.permutations
        )
        from_memory = run_round(inputs).result_digest
        from_files = run_round(_replace(inputs, rows)).result_digest
        return {"case": "digest", "in_memory": from_memory, "from_files": from_files}
    if args.case == "in_memory":
        from safetensors.torch import load_file

        updates = {t: load_file(str(p)) for t, p in zip(rows, files, strict=True)}
    else:
        updates = rows
    inputs = _inputs(evaluator, model, updates, args.rule, args.f, args.chunk, args.method, args.permutations)
    torch.manual_seed(0)
    start = time.perf_counter()
    outcome = run_round(inputs)
    seconds = time.perf_counter() - start
    return {
        "case": args.case,
        "seconds": seconds,
        "peak_rss": _peak_rss(),
        "rss_before_round": base,
        "flagged": len(outcome.flagged),
        "digest": outcome.result_digest,
        "utility_evaluations": outcome.report["contribution"]["details"].get("utility_evaluations"),
    }


def _replace(inputs, updates):
    from dataclasses import replace

    return replace(inputs, updates=updates)


def _scan(files: list[Path], names: list[str], args: argparse.Namespace, base: int) -> dict:
    import torch
    from safetensors import safe_open

    from aggregator.rows import SafetensorsRow

    start = time.perf_counter()
    buf = torch.empty(args.chunk)
    if args.reader == "pread":
        for path in files:
            row = SafetensorsRow.open(path, names)
            for lo in range(0, row.numel, args.chunk):
                hi = min(lo + args.chunk, row.numel)
                row.read_into(lo, hi, buf[: hi - lo])
    else:
        handles = [safe_open(str(p), framework="pt") for p in files]  # kept open, as a pass over rows would
        for handle in handles:
            for name in names:
                part = handle.get_slice(name)
                rows = part.get_shape()[0]
                step = max(1, args.chunk // max(1, int(torch.Size(part.get_shape()[1:]).numel())))
                for lo in range(0, rows, step):
                    buf[:1].copy_(part[lo : lo + step].reshape(-1)[:1])
    return {
        "case": f"scan-{args.reader}",
        "seconds": time.perf_counter() - start,
        "peak_rss": _peak_rss(),
        "base": base,
    }


def _run(case: str, args: argparse.Namespace, **extra) -> dict:
    cmd = [sys.executable, __file__, "--worker", case, "--dir", str(args.dir)]
    for key in ("n", "d", "rule", "f", "chunk", "method", "permutations", "reader"):
        value = extra.get(key, getattr(args, key))
        cmd += [f"--{key}", str(value)]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    if out.returncode != 0:
        sys.exit(f"{case} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _gb(x: float) -> str:
    return f"{x / 1e9:.2f} GB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--d", type=int, default=50_000_000)
    parser.add_argument("--rule", default="multi_krum")
    parser.add_argument("--f", type=int, default=None, help="Krum's f (default: 4, fewer for small n).")
    parser.add_argument("--chunk", type=int, default=1 << 17)
    parser.add_argument("--method", default="leave_one_out")
    parser.add_argument("--permutations", type=int, default=8)
    parser.add_argument("--reader", default="pread", choices=("pread", "mmap"))
    parser.add_argument(
        "--dir", type=Path, default=None, help="Where to write the updates (default: a temp dir)."
    )
    parser.add_argument("--keep", action="store_true", help="Leave the update files in --dir.")
    parser.add_argument(
        "--reuse", action="store_true", help="Use update files already in --dir (from --keep)."
    )
    parser.add_argument("--sweep", action="store_true", help="Also n in {10, 20} at d, and d/4, d/2 at n.")
    parser.add_argument(
        "--quick", action="store_true", help="Skip the small digest round, the scans and the floor."
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.case = args.worker
        print(json.dumps(_worker(args)))
        return
    if args.f is None:
        args.f = max(0, min(4, (args.n - 5) // 2))
    owned = args.dir is None
    args.dir = Path(args.dir or tempfile.mkdtemp(prefix="round-memory-"))
    args.dir.mkdir(parents=True, exist_ok=True)
    results = {}
    try:
        if not args.quick:
            # The digest check on a small round first: 8 updates of a 1M-parameter model.
            small = args.dir / "small"
            small.mkdir(exist_ok=True)
            _write_updates(small, 8, 1_000_000)
            small_args = argparse.Namespace(**{**vars(args), "dir": small})
            results["digest"] = _run("digest", small_args, n=8, d=1_000_000, f=1, method="gtg_shapley")
            results["in_memory_small"] = _run("in_memory", small_args, n=8, d=1_000_000, f=1)
            results["files_small"] = _run("round", small_args, n=8, d=1_000_000, f=1)
            shutil.rmtree(small)
        sizes = [(args.n, args.d)]
        if args.sweep:
            sizes = [
                (10, args.d),
                (20, args.d),
                (args.n, args.d // 4),
                (args.n, args.d // 2),
                (args.n, args.d),
            ]
        for n, d in sizes:
            present = sorted(args.dir.glob("update-*.safetensors"))
            if args.reuse and len(present) == n:
                dim = _setup(d)[0].dim
                written = {"dim": dim, "write_s": 0.0, "bytes": n * dim * 4}
            else:
                for old in present:
                    old.unlink()
                written = _write_updates(args.dir, n, d)
            key = f"n={n} d={written['dim']:,}"
            entry = {"bytes": written["bytes"], "write_s": written["write_s"]}
            entry["round"] = _run("round", args, n=n, d=d, f=max(0, min(args.f, (n - 5) // 2)))
            if not args.quick and (n, d) == (args.n, args.d):
                entry["floor"] = _run("floor", args, n=n, d=d)
                entry["scan_pread"] = _run("scan", args, n=n, d=d, reader="pread")
                entry["scan_mmap"] = _run("scan", args, n=n, d=d, reader="mmap")
            results[key] = entry
            r = entry["round"]
            print(
                f"{key}: updates {_gb(entry['bytes'])}, round {r['seconds']:.1f} s, peak RSS {_gb(r['peak_rss'])} "
                f"({r['peak_rss'] / entry['bytes']:.3f}x the updates), {r['utility_evaluations']} subset models",
                flush=True,
            )
    finally:
        if not args.keep:  # gigabytes of updates do not stay behind, whoever made the folder
            for old in args.dir.glob("update-*.safetensors"):
                old.unlink()
            if owned:
                shutil.rmtree(args.dir, ignore_errors=True)
    if "digest" in results:
        d = results["digest"]
        equal = d["in_memory"] == d["from_files"]
        print(f"digest in memory {d['in_memory'][:16]}, from files {d['from_files'][:16]}: equal={equal}")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
