#!/usr/bin/env python3
"""Generate data/text/reviews.csv: 800 short synthetic product reviews labelled positive /
negative, for the text-classification example. Deterministic (seeded), standard library only.
The label follows the opinion words; a negation ("not") flips them, so order matters.

usage: make-reviews.py OUT.csv
"""
import csv
import random
import sys

ITEMS = ["the battery", "this phone", "the screen", "the delivery", "the price", "the sound",
         "this kettle", "the manual", "the strap", "the camera"]
GOOD = ["great", "excellent", "lovely", "solid", "fast", "reliable", "superb", "nice"]
BAD = ["awful", "broken", "slow", "flimsy", "terrible", "noisy", "poor", "useless"]
FILLER = ["", "honestly ", "overall ", "after a week ", "to be fair ", "sadly ", "again "]


def main() -> None:
    rng = random.Random(7)
    out = sys.argv[1]
    with open(out, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["review", "sentiment"])
        for _ in range(800):
            positive = rng.random() < 0.5
            negate = rng.random() < 0.25
            words = GOOD if positive != negate else BAD
            text = f"{rng.choice(FILLER)}{rng.choice(ITEMS)} is {'not ' if negate else ''}{rng.choice(words)}"
            if rng.random() < 0.4:
                text += f" and {rng.choice(ITEMS)} is {rng.choice(GOOD if positive else BAD)}"
            w.writerow([text, "positive" if positive else "negative"])
    print(f"{out}: 800 reviews")


if __name__ == "__main__":
    main()
