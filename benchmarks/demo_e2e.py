"""`clauditor demo` end to end, as a newcomer runs it, against the 30 s target.

Run:  python benchmarks/demo_e2e.py [--runs 3]

Each run is a fresh process (`python -m clauditor.cli demo --out DIR`) into a fresh folder, so
start-up, imports, ingest of the committed sample, every analytics job the demo runs and the
report are all inside the figure. Printed: each run's wall time, the median, and the share
spent before the first line of output (interpreter start-up and imports), measured in the same
run by timing `clauditor --help`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    cli = [sys.executable, "-m", "clauditor.cli"]
    demo_times, help_times = [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            help_times.append(timed([*cli, "--help"]))
            demo_times.append(timed([*cli, "demo", "--out", str(Path(tmp) / "demo")]))
    for i, (d, h) in enumerate(zip(demo_times, help_times, strict=True), 1):
        print(f"run {i}: demo {d:6.2f} s   (clauditor --help alone: {h:.2f} s)")
    median = statistics.median(demo_times)
    print(f"median demo: {median:.2f} s (target <= 30 s): {'OK' if median <= 30 else 'MISSED'}")


if __name__ == "__main__":
    main()
