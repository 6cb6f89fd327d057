"""Compare the JSON lines of speed_bench (Lepton) and torch_bench.py (PyTorch) from one run of
bench/speed/run.sh: medians over all rounds, the ratio and the issue-3 target for each workload, and
the fraction of the physical limit reached by LeNet training.

    python bench/speed/report.py OURS.jsonl TORCH.jsonl
"""

import json
import statistics
import sys

# workload -> (higher is better, target on ours/torch, what the target means)
TARGETS = {
    "lenet-train-b64": (True, 1.5, ">= 1.5x"),
    "lenet-infer-b64": (True, 1.5, ">= 1.5x"),
    "lenet-infer-b1-latency": (False, 1.0, "<= 1.0x"),
    "gpt2-12x768-t128-forward": (False, 0.8, "<= 0.8x"),
    "matmul-1024": (True, None, "(reference)"),
}

# FLOP per image of one LeNet training step (forward + backward; the first conv needs no input
# gradient): conv1 26²·32·9, conv2 11²·64·288, fc1 1600·128, fc2 128·10 multiply-adds.
FWD = 2 * (26 * 26 * 32 * 9 + 11 * 11 * 64 * 288 + 1600 * 128 + 128 * 10)
BWD = 2 * FWD - 2 * (26 * 26 * 32 * 9)
TRAIN_FLOP = FWD + BWD


def load(path, key):
    out = {}
    for line in open(path):
        line = line.strip()
        if line.startswith("{"):
            r = json.loads(line)
            if "workload" in r:
                out.setdefault(r["workload"], (r["unit"], []))[1].extend(r[key])
    return out


def table(ours, torch, title):
    print(title)
    print(f"{'workload':<28} {'unit':<9} {'Lepton':>10} {'PyTorch':>10} {'ratio':>7}  target   met")
    for w, (higher, target, text) in TARGETS.items():
        if w not in ours or w not in torch:
            continue
        unit = ours[w][0]
        a, b = statistics.median(ours[w][1]), statistics.median(torch[w][1])
        ratio = a / b
        met = "" if target is None else ("yes" if (ratio >= target if higher else ratio <= target) else "no")
        print(f"{w:<28} {unit:<9} {a:>10.2f} {b:>10.2f} {ratio:>6.2f}x  {text:<8} {met}")
    if "lenet-train-b64" in ours and "matmul-1024" in ours:
        # The limit uses the same clock as the rates it is compared with.
        peak = statistics.median(ours["matmul-1024"][1]) * 1e9
        limit = peak / TRAIN_FLOP
        print(f"\nLeNet training: {TRAIN_FLOP / 1e6:.2f} MFLOP/image; at Lepton's measured matmul rate "
              f"({peak / 1e9:.0f} GFLOP/s) the physical limit is {limit:,.0f} images/s")
        for name, d in (("Lepton", ours), ("PyTorch", torch)):
            if "lenet-train-b64" in d:
                r = statistics.median(d["lenet-train-b64"][1])
                print(f"  {name:<8} {r:>8,.0f} images/s = {100 * r / limit:.1f} % of the limit")
    print(f"samples per workload: {min(len(v[1]) for v in ours.values())} rounds (medians shown)\n")


def main():
    table(load(sys.argv[1], "samples"), load(sys.argv[2], "samples"), "== wall clock ==")
    table(load(sys.argv[1], "cpu_samples"), load(sys.argv[2], "cpu_samples"),
          "== process CPU time (load-robust with THREADS=1; with more threads it also counts spin-waiting) ==")


if __name__ == "__main__":
    main()
