"""Start-up time of `import gauge`, `from gauge import get_model` and `gauge --help`.

Each command runs in a fresh process, `--runs` times (interleaved, after one
warm-up round so every command sees a warm disk cache); the median wall time is
reported beside `python -c pass`, the floor no Python program can beat.

    .venv/bin/python bench/startup.py            # 15 runs each
    .venv/bin/python bench/startup.py --runs 30 --json

Budgets (issue 2): `import gauge` <= 150 ms, `gauge --help` <= 250 ms.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BUDGET_MS = {"import gauge": 150.0, "gauge --help": 250.0}


def commands() -> dict[str, list[str]]:
    """Name -> argv of each measured command (the console script when installed)."""
    python = sys.executable
    script = Path(python).with_name("gauge")
    gauge_cli = [str(script)] if script.exists() else [shutil.which("gauge") or "gauge"]
    return {
        "python -c pass": [python, "-c", "pass"],
        "import gauge": [python, "-c", "import gauge"],
        "from gauge import get_model": [python, "-c", "from gauge import get_model"],
        "gauge --help": [*gauge_cli, "--help"],
    }


def time_once(argv: list[str]) -> float:
    """Milliseconds for one run of `argv` to exit (it must succeed)."""
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return (time.perf_counter() - started) * 1000


def measure(runs: int) -> dict[str, list[float]]:
    """Interleaved timings: one warm-up round, then `runs` rounds over every command."""
    cmds = commands()
    for argv in cmds.values():
        time_once(argv)
    samples: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(runs):
        for name, argv in cmds.items():
            samples[name].append(time_once(argv))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs per command (>= 10)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    if args.runs < 10:
        parser.error("--runs must be at least 10 for a stable median")
    samples = measure(args.runs)
    floor = statistics.median(samples["python -c pass"])
    rows = []
    for name, values in samples.items():
        median = statistics.median(values)
        budget = BUDGET_MS.get(name)
        rows.append(
            {
                "command": name,
                "median_ms": round(median, 1),
                "min_ms": round(min(values), 1),
                "max_ms": round(max(values), 1),
                "x_floor": round(median / floor, 2),
                "budget_ms": budget,
                "within_budget": None if budget is None else median <= budget,
            }
        )
    if args.json:
        print(json.dumps({"runs": args.runs, "python": sys.version.split()[0], "rows": rows}))
        return
    print(f"{args.runs} fresh-process runs each, Python {sys.version.split()[0]}")
    print(f"{'command':<30}{'median ms':>10}{'min':>8}{'max':>8}{'x floor':>9}  budget")
    for row in rows:
        budget = (
            ""
            if row["budget_ms"] is None
            else f"<= {row['budget_ms']:.0f} ms " + ("ok" if row["within_budget"] else "OVER")
        )
        print(
            f"{row['command']:<30}{row['median_ms']:>10.1f}{row['min_ms']:>8.1f}"
            f"{row['max_ms']:>8.1f}{row['x_floor']:>9.2f}  {budget}"
        )
    if any(row["within_budget"] is False for row in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
