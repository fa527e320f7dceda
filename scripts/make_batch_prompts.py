#!/usr/bin/env python3
"""Seeded JSON Lines input for `flashcore batch`: prompts of mixed lengths and generation lengths.

  scripts/make_batch_prompts.py --count 1000 --seed 0 --out prompts.jsonl
  flashcore batch --model DIR --input prompts.jsonl --output /dev/null --max-batch 64

Each line is {"id": i, "prompt": TEXT, "max_new_tokens": N}. The prompt length (in tokens) and N are
drawn uniformly from --prompt-tokens and --new-tokens with Python's random.Random(--seed), so the same
seed gives the same file on any machine (the issue-19 target: 1,000 prompts of 64-2,048 tokens, 64-512
new tokens each: the defaults).

No tokenizer is needed: a prompt of n tokens is n - 1 words drawn (with the same generator) from a list of
common lowercase English words, separated by single spaces. Each such word (with its leading space) is one
token of the LLaMA 3 vocabulary and BOS makes n: exact with the LLaMA 3.1 tokenizer (checked on 20 prompts
of 146-2,041 tokens with `flashcore tokenize --bos`). With LLaMA 2's SentencePiece the words are common
pieces too, so the count should be close, but that was not checked. The exact total of a run is what
`flashcore batch` prints in its summary line (prompt tokens). Random words make prompts that differ from
their first words on, so no two share a prefix.

Prints a line to stderr with the count, the mean prompt and generation lengths and the total context.
"""
import argparse
import json
import random
import sys

# Common words, each one token with its leading space in the LLaMA 3 vocabulary.
WORDS = (
    "the of and to in is was that for on with as it at by from this be are or an not have had his her they we "
    "you all one time day year man world life water house light night city river old new good long small great "
    "little first last people way back work hand part place home end school".split()
)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=1000, help="number of prompts (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed, the same file (default 0)")
    p.add_argument("--prompt-tokens", default="64-2048", metavar="MIN-MAX",
                   help="prompt length range in tokens, BOS included (default 64-2048)")
    p.add_argument("--new-tokens", default="64-512", metavar="MIN-MAX",
                   help="max_new_tokens range (default 64-512)")
    p.add_argument("--out", help="write here (default: stdout)")
    return p.parse_args()


def parse_range(text, name):
    try:
        lo, hi = (int(v) for v in text.split("-"))
    except ValueError:
        sys.exit(f"error: {name} {text!r}: expected MIN-MAX, e.g. 64-2048")
    if not 2 <= lo <= hi:
        sys.exit(f"error: {name} {text!r}: need 2 <= MIN <= MAX")
    return lo, hi


def make_lines(count, seed, prompt_range, new_range):
    rng = random.Random(seed)
    for i in range(count):
        prompt_tokens = rng.randint(*prompt_range)
        new_tokens = rng.randint(*new_range)
        words = [rng.choice(WORDS) for _ in range(prompt_tokens - 1)]  # + BOS = prompt_tokens
        yield {"id": i, "prompt": " ".join(words), "max_new_tokens": new_tokens}, prompt_tokens, new_tokens


def main():
    args = parse_args()
    if args.count < 1:
        sys.exit("error: --count must be at least 1")
    prompt_range = parse_range(args.prompt_tokens, "--prompt-tokens")
    new_range = parse_range(args.new_tokens, "--new-tokens")
    out = open(args.out, "w") if args.out else sys.stdout
    prompt_total = new_total = 0
    with out:
        for line, prompt_tokens, new_tokens in make_lines(args.count, args.seed, prompt_range, new_range):
            out.write(json.dumps(line) + "\n")
            prompt_total += prompt_tokens
            new_total += new_tokens
    n = args.count
    print(f"{n} prompts (seed {args.seed}): prompt ~{prompt_total / n:.0f} tokens on average, max_new_tokens "
          f"{new_total / n:.0f} on average; ~{prompt_total} prompt + up to {new_total} generated tokens in all",
          file=sys.stderr)


if __name__ == "__main__":
    main()
