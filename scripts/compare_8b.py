#!/usr/bin/env python3
"""Error budget of the engine's bf16 logits on a random LLaMA 3.1 8B-shaped checkpoint.

Reads the reference file from make_reference.py --bf16-logits (fp32 `logits` and HF's bf16
`logits_bf16`) and the engine's dump from `flashcore validate --dump-logits`, and checks that the
engine's bf16 logits are no further from fp32 than HF's own bf16 logits are: within --factor (1.5x)
by relative error ||x - fp32|| / ||fp32|| and by mean KL(softmax(fp32) || softmax(x)).
  compare_8b.py --reference REF.safetensors --engine DUMP.safetensors [--factor 1.5]
Exit status 0 when both paths (prefill, decode) pass.
"""
import argparse
import sys


def metrics(x, ref):
    import torch
    rel = ((x - ref).norm() / ref.norm()).item()
    logp_ref = torch.log_softmax(ref.double(), -1)
    logp_x = torch.log_softmax(x.double(), -1)
    kl = (logp_ref.exp() * (logp_ref - logp_x)).sum(-1).mean().item()
    top1 = (x.argmax(-1) == ref.argmax(-1)).float().mean().item()
    return rel, kl, top1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", required=True)
    p.add_argument("--engine", required=True)
    p.add_argument("--factor", type=float, default=1.5)
    a = p.parse_args()
    # torch (here and in metrics) is imported after parsing, so --help works where torch is missing.
    from safetensors.torch import load_file
    ref = load_file(a.reference)
    eng = load_file(a.engine)
    fp32 = ref["logits"].float()
    hf_rel, hf_kl, hf_top1 = metrics(ref["logits_bf16"].float(), fp32)
    print(f"{'logits':<22} {'rel_err vs fp32':>16} {'mean KL':>12} {'top1 agree':>11}")
    print(f"{'HF transformers bf16':<22} {hf_rel:16.4e} {hf_kl:12.4e} {hf_top1:11.4f}")
    ok = True
    for path in ("prefill_logits", "decode_logits"):
        rel, kl, top1 = metrics(eng[path].float(), fp32)
        good = rel <= a.factor * hf_rel and kl <= a.factor * hf_kl
        ok = ok and good
        print(f"{'flashcore ' + path.split('_')[0]:<22} {rel:16.4e} {kl:12.4e} {top1:11.4f}  "
              f"ratio rel {rel / hf_rel:.2f}x KL {kl / hf_kl:.2f}x  {'ok' if good else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
