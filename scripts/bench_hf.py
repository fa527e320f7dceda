#!/usr/bin/env python3
"""The measurement of `flashcore bench` for Hugging Face transformers on the same GPU.

A random-weight LlamaForCausalLM of the same shape (configs/NAME.json), bf16, drawn on the GPU, run
two ways:
  eager    model forward with a DynamicCache (sdpa attention), one call per token
  compile  StaticCache + torch.compile(mode="reduce-overhead", fullgraph=True): CUDA graphs, the
           recipe of the transformers docs for fast decoding. The static cache is sized per context
           (context + gen_len), so a decode step attends over that many slots, as HF does.
Per prompt length (eager forward in both modes: HF's generate() prefills outside the CUDA graphs too):
time to first token (prefill + argmax of the last logits). Per context (batch 1): greedy decode
ms/token p50/p90/p99 over gen_len steps after the context is filled by a prefill (in chunks, logits
of the last token only) and --warm-steps untimed steps. Host timers around synchronized steps, as
flashcore's.

  scripts/bench_hf.py --config configs/llama-3.1-8b.json --json hf.json [--modes eager,compile]
      [--prompt-len 128,512,2048] [--context 0,8192,32768] [--gen-len 128] [--iters 1]
Needs torch + transformers (the GPU machine; see shared/device.md).
"""
import argparse
import json
import sys
import time


def ints(text):
    return [int(x) for x in text.split(",") if x != ""]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/llama-3.1-8b.json", help="hub config.json of the model shape")
    p.add_argument("--json", required=True, help="results file")
    p.add_argument("--modes", default="eager,compile")
    p.add_argument("--prompt-len", type=ints, default=[128, 512, 2048])
    p.add_argument("--context", type=ints, default=[0, 8192, 32768])
    p.add_argument("--gen-len", type=int, default=128)
    p.add_argument("--iters", type=int, default=1, help="timed repetitions of each prefill")
    p.add_argument("--warm-steps", type=int, default=16, help="untimed decode steps before the timed ones")
    p.add_argument("--chunk", type=int, default=8192, help="prefill chunk when filling a long context")
    p.add_argument("--seed", type=int, default=1)
    return p.parse_args()


def percentile(samples, q):
    s = sorted(samples)
    import math
    k = min(max(math.ceil(q / 100 * len(s)), 1), len(s)) - 1
    return s[k]


def main():
    args = parse_args()
    import torch
    import transformers
    from transformers import LlamaConfig, LlamaForCausalLM
    try:
        from transformers import DynamicCache, StaticCache
    except ImportError:
        from transformers.cache_utils import DynamicCache, StaticCache

    torch.manual_seed(args.seed)
    with open(args.config) as f:
        hub = json.load(f)
    config = LlamaConfig(**hub)
    config.attn_implementation = "sdpa"
    dev = torch.device("cuda")
    t0 = time.perf_counter()
    with torch.device(dev):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.eval()
    load_s = time.perf_counter() - t0
    vocab = config.vocab_size
    out = {"device": torch.cuda.get_device_name(), "config": args.config, "torch": torch.__version__,
           "transformers": transformers.__version__, "load_s": load_s, "gen_len": args.gen_len,
           "modes": {}}

    def sync():
        torch.cuda.synchronize()

    def tokens(n):
        return torch.randint(0, vocab, (1, n), device=dev)

    @torch.no_grad()
    def fill(cache, ids, forward):
        """Prefill `ids` into `cache` in chunks; returns the argmax of the last logits."""
        n = ids.shape[1]
        last = None
        for b in range(0, n, args.chunk):
            e = min(n, b + args.chunk)
            pos = torch.arange(b, e, device=dev)
            o = forward(input_ids=ids[:, b:e], past_key_values=cache, cache_position=pos, use_cache=True,
                        logits_to_keep=1)
            last = o.logits[:, -1].argmax(-1)
        return last

    for mode in args.modes.split(","):
        res = {"prefill": [], "decode": []}
        out["modes"][mode] = res
        if mode == "compile":
            decode_forward = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)
        elif mode == "eager":
            decode_forward = model.forward
        else:
            sys.exit(f"unknown mode {mode}")

        def make_cache(max_len):
            if mode == "compile":
                try:
                    return StaticCache(config=config, max_cache_len=max_len)
                except TypeError:
                    return StaticCache(config=config, max_batch_size=1, max_cache_len=max_len, device=dev,
                                       dtype=torch.bfloat16)
            return DynamicCache()

        # Prefill: eager forward in both modes (torch.compile of a 2048-token prefill is a separate
        # compile per length; HF's generate() also prefills without the compiled graph).
        for plen in (args.prompt_len if mode == "eager" else []):
            times = []
            for it in range(args.iters + 1):
                cache = make_cache(plen + 1)
                ids = tokens(plen)
                sync()
                t = time.perf_counter()
                fill(cache, ids, model.forward)
                sync()
                if it > 0:
                    times.append((time.perf_counter() - t) * 1e3)
                del cache
            p50 = percentile(times, 50)
            res["prefill"].append({"prompt_len": plen, "ttft_ms_p50": p50, "prefill_tok_s": plen / (p50 / 1e3)})
            print(f"[{mode}] prefill {plen}: {p50:.2f} ms", flush=True)

        for ctx in args.context:
            try:
                # Steps run on from the context without rewinding: `warm` untimed steps (compile and CUDA
                # graph capture happen there), then gen_len timed ones. The cache holds all of them.
                warm = args.warm_steps
                cache = make_cache(ctx + warm + args.gen_len + 2)
                with torch.no_grad():
                    if ctx > 0:
                        fill(cache, tokens(ctx), model.forward)
                    tok = tokens(1)
                    # The first step eager: it allocates a lazily initialised static cache, whose tensors
                    # are then marked static so CUDA graphs may mutate them in place (transformers marks
                    # keys/values; 5.x layers also keep a length counter that it does not mark, which
                    # otherwise makes inductor skip CUDA graphs for "mutated inputs").
                    o = model.forward(input_ids=tok, past_key_values=cache, cache_position=torch.tensor([ctx], device=dev),
                                      use_cache=True)
                    tok = o.logits[:, -1:].argmax(-1).clone()
                    if mode == "compile":
                        for layer in getattr(cache, "layers", []):
                            for name in ("keys", "values", "cumulative_length"):
                                t = getattr(layer, name, None)
                                if isinstance(t, torch.Tensor):
                                    torch._dynamo.mark_static_address(t)
                    samples = []
                    sync()
                    t_warm = time.perf_counter()
                    for step in range(1, warm + args.gen_len + 1):
                        if step == warm + 1:
                            warm_s = time.perf_counter() - t_warm
                        pos = torch.tensor([ctx + step], device=dev)
                        sync()
                        t = time.perf_counter()
                        o = decode_forward(input_ids=tok, past_key_values=cache, cache_position=pos, use_cache=True)
                        tok = o.logits[:, -1:].argmax(-1).clone()
                        sync()
                        if step > warm:
                            samples.append((time.perf_counter() - t) * 1e3)
                r = {"batch": 1, "context": ctx, "ms_per_step_p50": percentile(samples, 50),
                     "ms_per_step_p90": percentile(samples, 90), "ms_per_step_p99": percentile(samples, 99),
                     "ms_per_step_mean": sum(samples) / len(samples), "warmup_s": warm_s, "warm_steps": warm}
                res["decode"].append(r)
                print(f"[{mode}] decode ctx {ctx}: p50 {r['ms_per_step_p50']:.3f} ms/token "
                      f"(warm-up {warm_s:.1f} s)", flush=True)
                del cache, o
                torch.cuda.empty_cache()
            except Exception as e:  # report and go on: one failing configuration must not lose the rest
                print(f"[{mode}] decode ctx {ctx}: failed: {type(e).__name__}: {e}", flush=True)
                res["decode"].append({"batch": 1, "context": ctx, "error": f"{type(e).__name__}: {e}"[:300]})
            with open(args.json, "w") as f:
                json.dump(out, f, indent=2)
        out["peak_memory_bytes"] = torch.cuda.max_memory_allocated()
    with open(args.json, "w") as f:
        json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
