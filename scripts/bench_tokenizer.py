#!/usr/bin/env python3
"""Encode throughput of Hugging Face `tokenizers` (the reference FlashCore's tokenizer is compared with).

  make-text --out FILE [--mb 4]
      Builds the benchmark text from documents on this machine (Node.js API docs in Markdown, the
      licenses in /usr/share/common-licenses, Python standard-library source, the multilingual test
      corpus), sorted and cut to --mb megabytes. Make it once and carry the same file to every machine.
  run --tokenizer FILE --text FILE [--repeat 5] [--threads 1]
      Times `tokenizers` on the text: one encode() of the whole text, and encode() line by line, best
      of --repeat, single-threaded by default (RAYON_NUM_THREADS, TOKENIZERS_PARALLELISM). Prints MB/s
      (1e6 bytes of UTF-8 input per second) in the same layout as build/fc_bench_tokenizer.
"""
import argparse
import glob
import json
import os
import sys
import sysconfig
import time


def cmd_make_text(args):
    parts = []
    for path in sorted(glob.glob("/usr/share/doc/nodejs/api/*.md")):
        parts.append(open(path, encoding="utf-8", errors="replace").read())
    for path in sorted(glob.glob("/usr/share/common-licenses/*")):
        if os.path.isfile(path):
            parts.append(open(path, encoding="utf-8", errors="replace").read())
    stdlib = sysconfig.get_paths()["stdlib"]
    for name in ["argparse.py", "json/decoder.py", "typing.py", "dataclasses.py", "pathlib.py", "difflib.py"]:
        path = os.path.join(stdlib, name)
        if os.path.exists(path):
            parts.append(open(path, encoding="utf-8").read())
    corpus = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "tokenizer", "corpus.json")
    if os.path.exists(corpus):
        strings = json.load(open(corpus, encoding="utf-8"))
        parts.append("\n".join(s for s in strings if len(s) < 300) * 20)
    text = "\n".join(parts)
    limit = int(args.mb * 1e6)
    data = text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")
    with open(args.out, "w", encoding="utf-8", newline="") as f:
        f.write(data)
    print(f"wrote {len(data.encode('utf-8')) / 1e6:.2f} MB to {args.out}")


def cmd_run(args):
    os.environ["RAYON_NUM_THREADS"] = str(args.threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if args.threads > 1 else "false"
    import tokenizers
    from tokenizers import Tokenizer

    t0 = time.perf_counter()
    tok = Tokenizer.from_file(args.tokenizer)
    load_s = time.perf_counter() - t0
    with open(args.text, encoding="utf-8", newline="") as f:
        text = f.read()
    size = len(text.encode("utf-8"))
    lines = text.splitlines(keepends=True)
    mb = size / 1e6
    print(f"tokenizer: {args.tokenizer} (tokenizers {tokenizers.__version__}), load {load_s:.3f} s")
    print(f"text: {args.text}, {mb:.2f} MB, {len(lines)} lines")
    best_whole = best_lines = best_decode = float("inf")
    tokens = line_tokens = 0
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        ids = tok.encode(text, add_special_tokens=False).ids
        best_whole = min(best_whole, time.perf_counter() - t0)
        tokens = len(ids)
        t0 = time.perf_counter()
        line_tokens = sum(len(tok.encode(line, add_special_tokens=False).ids) for line in lines)
        best_lines = min(best_lines, time.perf_counter() - t0)
        t0 = time.perf_counter()
        back = tok.decode(ids, skip_special_tokens=False)
        best_decode = min(best_decode, time.perf_counter() - t0)
        if back != text:
            print("warning: decode(encode(text)) differs from the text", file=sys.stderr)
    print(f"encode whole text:   {mb / best_whole:8.2f} MB/s  {tokens / best_whole:10.0f} tokens/s  "
          f"({tokens} tokens, {size / tokens:.1f} bytes/token, best of {args.repeat})")
    print(f"encode line by line: {mb / best_lines:8.2f} MB/s  {line_tokens / best_lines:10.0f} tokens/s  ({line_tokens} tokens)")
    print(f"decode whole text:   {mb / best_decode:8.2f} MB/s")
    if args.threads == 1:
        t0 = time.perf_counter()
        tok.encode_batch(lines, add_special_tokens=False)
        print(f"encode_batch lines:  {mb / (time.perf_counter() - t0):8.2f} MB/s  (1 thread)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("make-text")
    p.add_argument("--out", required=True)
    p.add_argument("--mb", type=float, default=4.0)
    p.set_defaults(fn=cmd_make_text)
    p = sub.add_parser("run")
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--text", required=True)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(fn=cmd_run)
    args = parser.parse_args()
    args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
