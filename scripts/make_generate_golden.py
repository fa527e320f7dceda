#!/usr/bin/env python3
"""Golden greedy generation for `flashcore generate` tests: HF transformers (fp32, eager attention,
do_sample=False) continues a prompt on a fixture checkpoint whose directory holds its tokenizer.json.

  scripts/make_generate_golden.py --model tests/data/models/tiny-llama3-bpe --out DIR/generate.golden.json \
      [--prompt TEXT ...] [--max-new-tokens 24]

Writes, per prompt: the text, its ids (tokenizers, no special tokens: flashcore generate --no-bos), the
generated ids (stopping at the config's eos), their decoded text, and the smallest top-1/top-2 logit gap
along the way (a near tie there would make the golden fragile; the script refuses gaps < 1e-3).
Needs torch, transformers, tokenizers (the GPU machine).
"""
import argparse
import json
import os


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--prompt", nargs="+", default=["the cat sat on the mat", "hello world, what is this?"])
    p.add_argument("--max-new-tokens", type=int, default=24)
    args = p.parse_args()
    import torch
    import transformers
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    model = transformers.LlamaForCausalLM.from_pretrained(args.model, dtype=torch.float32,
                                                          attn_implementation="eager").eval()
    eos = model.config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    cases = []
    for text in args.prompt:
        ids = tok.encode(text, add_special_tokens=False).ids
        seq = list(ids)
        out, min_gap = [], float("inf")
        with torch.no_grad():
            for _ in range(args.max_new_tokens):
                logits = model(torch.tensor([seq])).logits[0, -1]
                top2 = logits.topk(2).values
                min_gap = min(min_gap, float(top2[0] - top2[1]))
                nxt = int(logits.argmax())
                out.append(nxt)
                seq.append(nxt)
                if nxt in eos:
                    break
        if min_gap < 1e-3:
            raise SystemExit(f"prompt {text!r}: top-2 gap {min_gap:.2e} too small for a golden")
        cases.append({"prompt": text, "prompt_ids": ids, "ids": out,
                      "text": tok.decode([i for i in out if i not in eos], skip_special_tokens=True),
                      "min_top2_gap": min_gap})
    with open(args.out, "w") as f:
        json.dump({"transformers": transformers.__version__, "torch": torch.__version__,
                   "max_new_tokens": args.max_new_tokens, "cases": cases}, f, indent=2)
        f.write("\n")
    for c in cases:
        print(c["prompt"], "->", c["ids"], repr(c["text"]), f"gap {c['min_top2_gap']:.3f}")


if __name__ == "__main__":
    main()
