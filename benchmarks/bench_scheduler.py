"""Scheduler efficiency: FLOPs until N*(C_target) is pinned to ±10% — adaptive vs isoFLOP grids, random, TPE.

    PYTHONPATH=. python3 benchmarks/bench_scheduler.py --seeds 10 --workers 2 \
        --json benchmarks/results/scheduler.json --plot docs/bench_scheduler.png

A thin wrapper around `skillscale bench scheduler` (scheduler/bench.py, which documents the protocol);
every flag is passed through. Results feed the "Scheduler efficiency" section of BENCHMARKS.md.
"""

import sys

from scheduler.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "scheduler", *sys.argv[1:]]))
