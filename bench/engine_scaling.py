"""The engines side by side: a round over update files and a simulated federation, on the local engine and on Ray
with 1 and 2 workers, each in a fresh process; times are ratios against the local engine measured in the same
run, and every engine's digest must equal the local one.

Each case runs the workload once before the timed run (Ray workers import torch on their first task; every
engine then reads the update files from a warm page cache): the figure is the steady state of a long-running
aggregator, and the start-up (a Ray instance, the warm-up run) is reported beside it.

    nice python bench/engine_scaling.py                        # round: 24 x 5M parameters; simulation: 400 trainers
    nice python bench/engine_scaling.py --n 40 --d 20000000    # a bigger round
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

ENGINES = (("local", None), ("ray", 1), ("ray", 2))


def _worker(args: argparse.Namespace) -> dict:
    sys.path.insert(0, str(ROOT))
    from aggregator.engine import get_engine

    start = time.perf_counter()
    engine = get_engine(args.engine, num_cpus=args.cpus)
    startup = time.perf_counter() - start
    try:
        if args.workload == "round":
            import round_memory

            from aggregator.pipeline import run_round
            from aggregator.rows import SafetensorsRow

            model, evaluator = round_memory._setup(args.d)
            files = sorted(Path(args.dir).glob("update-*.safetensors"))
            rows = {f"0x{i + 1:040x}": SafetensorsRow.open(p, list(model.spec)) for i, p in enumerate(files)}
            inputs = round_memory._inputs(
                evaluator, model, rows, "multi_krum", 4, 1 << 17, "leave_one_out", 8
            )

            def work():
                return run_round(inputs, engine).result_digest
        else:
            from aggregator.simulation import simulate

            def work():
                result = simulate(
                    args.trainers - args.trainers // 5,
                    {"sign_flip": args.trainers // 10, "gaussian_noise": args.trainers // 10},
                    rounds=1,
                    rule="multi_krum",
                    epochs=2,
                    engine=engine,
                )
                return result.outcomes[-1].result_digest

        warm = time.perf_counter()
        work()  # Ray workers import torch on their first task; for every engine the files get cached
        warm_s = time.perf_counter() - warm
        timed = time.perf_counter()
        digest = work()
        return {
            "seconds": time.perf_counter() - timed,
            "startup_s": startup + warm_s,
            "digest": digest,
            "workers": engine.workers,
        }
    finally:
        engine.close()


def _run(args: argparse.Namespace, workload: str, engine: str, cpus: int | None) -> dict:
    cmd = [sys.executable, __file__, "--worker", workload, "--engine", engine, "--dir", str(args.dir)]
    cmd += ["--d", str(args.d), "--trainers", str(args.trainers)] + (["--cpus", str(cpus)] if cpus else [])
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{workload} on {engine} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument("--d", type=int, default=5_000_000)
    parser.add_argument("--trainers", type=int, default=400)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--engine", default="local")
    parser.add_argument("--cpus", type=int, default=None)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.workload = args.worker
        print(json.dumps(_worker(args)))
        return
    import round_memory

    args.dir = Path(args.dir or tempfile.mkdtemp(prefix="engine-scaling-"))
    args.dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    try:
        round_memory._write_updates(args.dir, args.n, args.d)
        for workload in ("round", "simulation"):
            for engine, cpus in ENGINES:
                name = f"{workload} {engine}" + (f" x{cpus}" if cpus else "")
                results[name] = _run(args, workload, engine, cpus)
                base = results[f"{workload} local"]
                r = results[name]
                same = r["digest"] == base["digest"]
                print(
                    f"{name}: {r['seconds']:.1f} s ({base['seconds'] / r['seconds']:.2f}x the local engine's speed), "
                    f"start-up {r['startup_s']:.1f} s, digest equal: {same}",
                    flush=True,
                )
    finally:
        shutil.rmtree(args.dir, ignore_errors=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
