#!/usr/bin/env python3
"""How often two `flashcore batch` result files agree, request by request (matched by line order and id).

  flashcore batch --model DIR --input prompts.jsonl --output alone.jsonl --max-batch 1 --max-batch-tokens 4096
  flashcore batch --model DIR --input prompts.jsonl --output batched.jsonl --max-batch 32
  scripts/compare_batch_results.py alone.jsonl batched.jsonl

With --max-batch 1 and a step budget above the longest prompt, batch makes the calls `generate` makes
(one prefill, then one decode step at a time), so the first file is "each request alone". On the CPU
backend the two always agree; on the GPU, bf16 products of a batch may round differently from those of one
row, and a greedy choice between two near-equal logits can then differ. Prints the share of requests whose
token ids are identical, and for the others where they first differ (tokens into the generation).
Exits 1 when the files do not hold the same requests.
"""
import argparse
import json
import statistics
import sys


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", help="results of the reference run (e.g. --max-batch 1)")
    p.add_argument("b", help="results to compare with it")
    return p.parse_args()


def read(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def first_difference(x, y):
    for i, (u, v) in enumerate(zip(x, y)):
        if u != v:
            return i
    return min(len(x), len(y))


def main():
    args = parse_args()
    a, b = read(args.a), read(args.b)
    if len(a) != len(b) or any(x.get("id") != y.get("id") for x, y in zip(a, b)):
        sys.exit(f"error: {args.a} and {args.b} do not hold the same requests in the same order")
    same, differ, errors = 0, [], 0
    for x, y in zip(a, b):
        if "error" in x or "error" in y:
            errors += 1
            continue
        if x["token_ids"] == y["token_ids"]:
            same += 1
        else:
            differ.append(first_difference(x["token_ids"], y["token_ids"]))
    compared = same + len(differ)
    print(f"{same} of {compared} requests identical ({100.0 * same / max(compared, 1):.1f}%)"
          + (f"; {errors} with an error skipped" if errors else ""))
    if differ:
        print(f"the others first differ after {statistics.median(differ):.0f} tokens (median; min {min(differ)}, "
              f"max {max(differ)})")


if __name__ == "__main__":
    main()
