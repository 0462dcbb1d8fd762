"""Run every benchmark: API efficiency, pacing, compute. Never part of the test suite.

    .venv/bin/python benchmarks/run.py              # the published set (about 10 minutes)
    .venv/bin/python benchmarks/run.py --with-5m    # + compute at 5M contacts / 50M activities
    .venv/bin/python benchmarks/run.py --quick      # small sizes, a smoke test (results/quick/)
    .venv/bin/python benchmarks/run.py --only api pacing

Each benchmark runs in its own process, prints its table and writes its JSON:
benchmarks/results/api_efficiency.json, pacing.json, compute.json; this runner adds
benchmarks/results/run.json (what ran, how long, and the machine's load average before
and after each step -- other work on the machine slows the wall times, not the counts).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"


def steps(args: argparse.Namespace, results: Path) -> dict[str, list[str]]:
    bench = REPO / "benchmarks"
    if args.quick:
        api = ["--sizes", "2000"]
        pacing = ["--contacts", "5000", "--scale", "0.1"]
        compute = ["--sizes", "100000", "--reps", "1"]
    else:
        api = ["--sizes", "10000", "100000"]
        pacing = ["--contacts", "80000", "--scale", str(args.pacing_scale),
                  "--search-per-second", "5", "4"]
        sizes = ["100000", "1000000"] + (["5000000"] if args.with_5m else [])
        compute = ["--sizes", *sizes, "--reps", str(args.reps)]
    return {
        "api": [str(bench / "api_efficiency.py"), *api,
                "--out", str(results / "api_efficiency.json")],
        "pacing": [str(bench / "pacing.py"), *pacing, "--out", str(results / "pacing.json")],
        "compute": [str(bench / "compute.py"), *compute, "--out", str(results / "compute.json")],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=["api", "pacing", "compute"],
                        default=["api", "pacing", "compute"])
    parser.add_argument("--with-5m", action="store_true",
                        help="also compute at 5,000,000 contacts, with memory_limit 2GB (a few minutes)")
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    parser.add_argument("--reps", type=int, default=3, help="compute repetitions (median)")
    parser.add_argument("--pacing-scale", type=float, default=0.5,
                        help="real seconds per HubSpot second in the pacing run")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if args.with_5m:  # the documented setting for multi-million portals (README, Performance)
        env.setdefault("SEGSYNC_BENCH_MEMORY_LIMIT", "2GB")
    results = RESULTS / "quick" if args.quick else RESULTS  # never overwrite the published set
    results.mkdir(parents=True, exist_ok=True)
    record: dict[str, object] = {"machine": {"cpus": os.cpu_count(),
                                             "python": platform.python_version(),
                                             "platform": platform.platform()},
                                 "steps": []}
    failed = 0
    for name, command in steps(args, results).items():
        if name not in args.only:
            continue
        print(f"\n===== {name}: {' '.join(Path(c).name if c.endswith('.py') else c for c in command)}"
              f"  (load average {os.getloadavg()[0]:.2f})", flush=True)
        began = time.perf_counter()
        code = subprocess.run([sys.executable, *command], cwd=REPO, env=env).returncode
        seconds = time.perf_counter() - began
        failed += code != 0
        record["steps"].append({"name": name, "command": command, "exit_code": code,  # type: ignore[union-attr]
                                "seconds": round(seconds, 1),
                                "load_average_after": [round(x, 2) for x in os.getloadavg()]})
        print(f"===== {name}: {'ok' if code == 0 else f'FAILED ({code})'} in {seconds:.0f} s",
              flush=True)
    ran = {step["name"] for step in record["steps"]}  # type: ignore[union-attr]
    try:  # keep the record of the steps not rerun this time
        earlier = json.loads((results / "run.json").read_text())["steps"]
    except (OSError, ValueError, KeyError):
        earlier = []
    record["steps"] = [s for s in earlier if s.get("name") not in ran] + record["steps"]  # type: ignore[operator]
    (results / "run.json").write_text(json.dumps(record, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
