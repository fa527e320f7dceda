#!/usr/bin/env python3
"""torch scaled_dot_product_attention at the configurations of fc_bench_attention, and a combined table.

Same conventions as kernels/bench/bench_attention.cu:
  prefill: B=1, S in {512, 2048, 8192}, 32 query heads, 8 kv heads, head_dim 128, causal;
           FLOPs = 4 * S * S / 2 * head_dim * q_heads  (the causal half, 2 FLOPs per multiply-add)
  decode:  one query per sequence, B=1 with KV 1k/8k/32k/128k and B=32 with KV 4k;
           bytes = B * kv_len * kv_heads * head_dim * 2 (K and V) * 2 bytes
GQA is passed natively (enable_gqa=True, K/V stay at 8 heads: no repeat, so SDPA reads the same bytes
ours does). K/V are contiguous (B, heads, L, D) tensors, not paged. Each SDPA backend (cuDNN, flash,
memory-efficient) is timed on its own where it accepts the call; the best one is compared.
Timing: CUDA events, warm-up, median. Prefill: around each call. Decode: per call inside a CUDA graph of
consecutive calls (launch and Python overhead excluded, as fc_bench_attention does; eager in the note),
rotating among enough K/V copies that the bytes touched exceed 4x the L2 size.

  python3 scripts/bench_attention_torch.py [--ours build-gpu/bench_attention.csv] [--runs 30] [--quick]
"""
import argparse
import csv
import math
import sys


def median_ms(fn, warmup, runs):
    import torch
    for i in range(warmup):
        fn(i)
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(runs)]
    stops = [torch.cuda.Event(enable_timing=True) for _ in range(runs)]
    for i in range(runs):
        starts[i].record()
        fn(warmup + i)
        stops[i].record()
    torch.cuda.synchronize()
    times = sorted(s.elapsed_time(e) for s, e in zip(starts, stops))
    return times[len(times) // 2]


def graph_ms_per_call(make_call, calls, runs):
    """ms per call, launch overhead excluded: `calls` calls captured in one CUDA graph, median replay / calls."""
    import torch
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for i in range(3):
            make_call(i)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(calls):
            make_call(i)
    return median_ms(lambda i: graph.replay(), 2, runs) / calls


def backends():
    from torch.nn.attention import SDPBackend
    return [("cudnn", SDPBackend.CUDNN_ATTENTION), ("flash", SDPBackend.FLASH_ATTENTION),
            ("efficient", SDPBackend.EFFICIENT_ATTENTION)]


def time_backends(make_call, warmup, runs, graph_calls=0):
    """{backend name: ms} for every backend that accepts the call (per call inside a CUDA graph of
    graph_calls calls when graph_calls > 0, else eager), and {backend name: eager ms}."""
    import torch
    from torch.nn.attention import sdpa_kernel
    results, eager = {}, {}
    for name, backend in backends():
        try:
            with sdpa_kernel([backend]):
                make_call(0)
                torch.cuda.synchronize()
                eager[name] = median_ms(make_call, warmup, runs)
                results[name] = eager[name]
                if graph_calls > 0:
                    try:
                        results[name] = graph_ms_per_call(make_call, graph_calls, max(5, runs // 3))
                    except Exception as e:
                        print(f"  {name}: graph capture failed, eager timing kept ({str(e).splitlines()[0][:100]})",
                              file=sys.stderr)
        except Exception as e:  # backend refuses this shape / GQA / dtype
            results[name] = None
            print(f"  {name}: not available ({str(e).splitlines()[0][:100]})", file=sys.stderr)
    return results, eager


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ours", help="CSV written by fc_bench_attention --csv, for the combined table")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--quick", action="store_true", help="one prefill and one decode size")
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F
    dev = torch.device("cuda")
    prop = torch.cuda.get_device_properties(0)
    l2 = getattr(prop, "L2_cache_size", 50 << 20)
    print(f"device: {prop.name}, torch {torch.__version__}, L2 {l2 / 1e6:.0f} MB")
    hq, hkv, d = 32, 8, 128
    scale = 1.0 / math.sqrt(d)
    rows = []  # (kernel, config, time_us, rate, unit, note)

    for s in ([2048] if args.quick else [512, 2048, 8192]):
        q = torch.randn(1, hq, s, d, device=dev, dtype=torch.bfloat16)
        k = torch.randn(1, hkv, s, d, device=dev, dtype=torch.bfloat16)
        v = torch.randn(1, hkv, s, d, device=dev, dtype=torch.bfloat16)
        call = lambda i: F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=True)
        res, _ = time_backends(call, 3, args.runs)
        flops = 4.0 * s * s / 2 * d * hq
        ok = {n: t for n, t in res.items() if t is not None}
        best = min(ok, key=ok.get)
        note = " ".join(f"{n}={flops / (t * 1e-3) / 1e12:.0f}" for n, t in ok.items())
        rows.append(("prefill", f"B=1 S={s}", ok[best] * 1e3, flops / (ok[best] * 1e-3) / 1e12, "TFLOP/s",
                     f"best={best} ({note})"))
        del q, k, v

    decode_cfgs = [(1, 32768)] if args.quick else [(1, 1024), (1, 8192), (1, 32768), (1, 131072)]
    decode_cfgs.append((32, 4096))
    for b, kv_len in decode_cfgs:
        nbytes = b * kv_len * hkv * d * 2 * 2
        copies = max(1, math.ceil(4 * l2 / nbytes))
        q = torch.randn(b, hq, 1, d, device=dev, dtype=torch.bfloat16)
        ks = [torch.randn(b, hkv, kv_len, d, device=dev, dtype=torch.bfloat16) for _ in range(copies)]
        vs = [torch.randn(b, hkv, kv_len, d, device=dev, dtype=torch.bfloat16) for _ in range(copies)]
        call = lambda i: F.scaled_dot_product_attention(q, ks[i % copies], vs[i % copies], scale=scale,
                                                        enable_gqa=True)
        res, eager = time_backends(call, 5, args.runs, graph_calls=max(copies, 20))
        ok = {n: t for n, t in res.items() if t is not None}
        best = min(ok, key=ok.get)
        note = " ".join(f"{n}={nbytes / (t * 1e-3) / 1e9:.0f}" for n, t in ok.items())
        note += f"; eager {best} {eager[best] * 1e3:.1f} us"
        kv = f"{kv_len // 1024}k" if kv_len % 1024 == 0 else str(kv_len)
        rows.append(("decode", f"B={b} KV={kv}", ok[best] * 1e3, nbytes / (ok[best] * 1e-3) / 1e9, "GB/s",
                     f"best={best} ({note})"))
        del ks, vs, q

    print(f"\ntorch SDPA\n{'kernel':8} {'config':16} {'time_us':>10} {'rate':>16}  note")
    for kernel, config, us, rate, unit, note in rows:
        print(f"{kernel:8} {config:16} {us:10.1f} {rate:8.1f} {unit:7}  {note}")

    if args.ours:
        ours = {}
        ceilings = {}
        with open(args.ours) as f:
            for r in csv.DictReader(f):
                if r["kernel"] == "ceiling":
                    ceilings[r["config"]] = float(r["rate"])
                else:
                    ours[(r["kernel"], r["config"])] = r
        print(f"\nFlashCore vs torch SDPA (same GPU; ceilings: copy {ceilings.get('copy', 0):.0f} GB/s, "
              f"cuBLAS GEMM {ceilings.get('gemm', 0):.0f} TFLOP/s)")
        print(f"{'kernel':8} {'config':16} {'unit':8} {'ours':>8} {'sdpa':>8} {'ours/sdpa':>10} {'ours/ceil':>10}")
        for kernel, config, us, rate, unit, note in rows:
            mine = ours.get((kernel, config))
            if mine is None:
                continue
            r_ours = float(mine["rate"])
            ceil = float(mine["ceiling"]) or float("nan")
            print(f"{kernel:8} {config:16} {unit:8} {r_ours:8.1f} {rate:8.1f} {r_ours / rate:10.2f} "
                  f"{100 * r_ours / ceil:9.1f}%")


if __name__ == "__main__":
    main()
