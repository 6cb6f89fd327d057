#!/usr/bin/env python3
"""Generate data/series/load.csv: a synthetic hourly electricity load (2,000 hours) for the
time-series example. Deterministic (seeded), standard library only.

    load = 100 + 20 sin(2 pi h / 24) + 10 sin(2 pi h / 168) + 1.5 (temperature - 15) + noise
    temperature = 15 + 8 sin(2 pi (h - 6) / 24) + slow drift + noise

usage: make-series.py OUT.csv
"""
import math
import random
import sys


def main() -> None:
    rng = random.Random(13)
    out = sys.argv[1]
    drift = 0.0
    with open(out, "w", newline="\n") as f:
        f.write("hour,temperature,load\n")
        for h in range(2000):
            drift = 0.98 * drift + rng.gauss(0.0, 0.3)
            temp = 15 + 8 * math.sin(2 * math.pi * (h - 6) / 24) + drift + rng.gauss(0.0, 0.5)
            load = (
                100
                + 20 * math.sin(2 * math.pi * h / 24)
                + 10 * math.sin(2 * math.pi * h / 168)
                + 1.5 * (temp - 15)
                + rng.gauss(0.0, 2.0)
            )
            f.write(f"{h},{temp:.3f},{load:.3f}\n")
    print(f"{out}: 2000 rows")


if __name__ == "__main__":
    main()
