#!/usr/bin/env python3
"""Print one step of a `--dist-timeline` file (JSON lines, lepton_dist::StepTiming) as a Markdown
table and an ASCII chart: each segment's backward span, each bucket's packing and all-reduce
span, in ms. Without a step number: the step with the median step time (after 5 warm-up steps).
  python3 bench/dist/timeline.py TIMELINE.jsonl [STEP]
"""
import json
import statistics
import sys

steps = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
if len(sys.argv) > 2:
    s = next(x for x in steps if x["step"] == int(sys.argv[2]))
else:
    warm = steps[5:] or steps
    med = statistics.median_low(x["step_ms"] for x in warm)
    s = next(x for x in warm if x["step_ms"] == med)
back = s.get("backward_ms", [])
seg_of = s.get("bucket_segment", [])
rows = []  # (label, start, end, char)
if back:
    for i, b in enumerate(back):
        part = " (last layers)" if i == 0 else " (first layers)" if i == len(back) - 1 else ""
        rows.append((f"backward {i + 1}/{len(back)}{part}", b[0], b[1], "#"))
        for k, seg in enumerate(seg_of):
            if seg == i:
                rows.append((f"  bucket {k} pack", *s["fill_ms"][k], "="))
                rows.append((f"  bucket {k} all-reduce", *s["reduce_ms"][k], "~"))
    origin = "the start of the backward pass (last segment first)"
else:
    for k in range(s["buckets"]):
        rows.append((f"bucket {k} pack", *s["fill_ms"][k], "="))
        rows.append((f"bucket {k} all-reduce", *s["reduce_ms"][k], "~"))
    origin = "the end of the backward pass (not overlapped)"
rows.append(("gradients written back", s["reduced_ms"], s["done_ms"], "+"))
end = max(r[2] for r in rows) or 1.0
width = 64
print(f"step {s['step']}: {s['buckets']} buckets, {s['elements'] * 4 / 2**20:.2f} MiB; step period "
      f"{s['step_ms']:.1f} ms, sync exposed on the training thread {s['exposed_ms']:.1f} ms; "
      f"ms from {origin}\n")
print("| span | start ms | end ms |\n|---|---:|---:|")
for label, a, b, _ in rows:
    print(f"| {label.strip()} | {a:.2f} | {b:.2f} |")
print(f"\n```\n{'':32}0{'':{width - 8}}{end:7.1f} ms")
for label, a, b, c in rows:
    i, j = int(a / end * width), max(int(b / end * width), int(a / end * width) + 1)
    print(f"{label:<32}|{' ' * i}{c * (j - i)}{' ' * (width - j)}|")
print("```")
