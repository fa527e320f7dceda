#!/usr/bin/env python3
"""Markdown comparison table and a PNG plot from `flashcore bench --json` and `scripts/bench_hf.py --json`.

  scripts/bench_compare.py --ours ours.json --hf hf_eager.json hf_compile.json --md table.md --png decode.png

The plot: decode ms/token (batch 1) against context length for flashcore, HF eager and HF compile,
with the bandwidth floor (bytes a step must read / the copy bandwidth flashcore measured in the same
run) drawn as a line. Needs matplotlib for --png.
"""
import argparse
import json


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ours", required=True, help="flashcore bench --json output")
    p.add_argument("--hf", nargs="*", default=[], help="scripts/bench_hf.py --json output(s); their modes are merged")
    p.add_argument("--md", help="write the markdown tables here (else stdout)")
    p.add_argument("--png", help="write the decode plot here")
    return p.parse_args()


def fmt(v, digits=2):
    return "—" if v is None else f"{v:.{digits}f}"


def main():
    args = parse_args()
    ours = json.load(open(args.ours))
    hf, modes = {}, {}
    for path in args.hf:
        try:
            part = json.load(open(path))
        except (OSError, ValueError) as e:  # a run that timed out leaves no or partial JSON
            print(f"skipping {path}: {e}")
            continue
        hf.update({k: v for k, v in part.items() if k != "modes"})
        modes.update(part.get("modes", {}))
    copy = ours.get("copy_bandwidth_gbs")
    lines = [f"GPU: {ours.get('device')}; model: {ours.get('model')}; copy bandwidth measured by flashcore: "
             f"{fmt(copy, 0)} GB/s (read + write)", ""]
    if hf.get("torch"):
        lines += [f"HF: torch {hf['torch']}, transformers {hf['transformers']}, bf16, random weights", ""]

    def hf_decode(mode, ctx):
        for r in modes.get(mode, {}).get("decode", []):
            if r.get("context") == ctx and "ms_per_step_p50" in r:
                return r["ms_per_step_p50"]
        return None

    def hf_prefill(mode, plen):
        for r in modes.get(mode, {}).get("prefill", []):
            if r.get("prompt_len") == plen:
                return r["ttft_ms_p50"]
        return None

    lines += ["### Decode, batch 1 (ms/token, p50)", "",
              "| context | floor | flashcore | % of roofline | p90 | p99 | HF eager | HF compile | vs eager | vs compile |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    b1 = [r for r in ours["decode"] if r["batch"] == 1]
    for r in b1:
        e, c = hf_decode("eager", r["context"]), hf_decode("compile", r["context"])
        p50 = r["ms_per_step_p50"]
        lines.append(f"| {r['context']} | {fmt(r.get('floor_ms'), 3)} | {p50:.3f} | {fmt(r.get('roofline_pct'), 1)}% | "
                     f"{r['ms_per_step_p90']:.3f} | {r['ms_per_step_p99']:.3f} | {fmt(e, 3)} | {fmt(c, 3)} | "
                     f"{fmt(e / p50 if e else None)}x | {fmt(c / p50 if c else None)}x |")
    lines += ["", "### Decode, all batch sizes (flashcore)", "",
              "| batch | context | p50 ms | p90 ms | p99 ms | tok/s | MB/step | GB/s | % of roofline |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in ours["decode"]:
        lines.append(f"| {r['batch']} | {r['context']} | {r['ms_per_step_p50']:.3f} | {r['ms_per_step_p90']:.3f} | "
                     f"{r['ms_per_step_p99']:.3f} | {r['tok_s']:.0f} | {r['bytes_per_step'] / 1e6:.0f} | "
                     f"{r['achieved_gbs']:.0f} | {fmt(r.get('roofline_pct'), 1)}% |")
    for s in ours.get("skipped", []):
        lines.append(f"| {s['batch']} | {s['context']} | skipped: {s['why']} | | | | | | |")
    # bench_hf.py times prefill eagerly in both modes; a compile column only when a run measured one.
    hf_modes = [m for m in ("eager", "compile") if modes.get(m, {}).get("prefill")]
    lines += ["", "### Prefill (time to first token, ms, p50)", "",
              "| prompt | flashcore | tok/s | TFLOP/s |" + "".join(f" HF {m} |" for m in hf_modes),
              "|---:|---:|---:|---:|" + "---:|" * len(hf_modes)]
    for r in ours["prefill"]:
        lines.append(f"| {r['prompt_len']} | {r['ttft_ms_p50']:.2f} | {r['prefill_tok_s']:.0f} | {r['tflops']:.0f} |" +
                     "".join(f" {fmt(hf_prefill(m, r['prompt_len']))} |" for m in hf_modes))
    if ours.get("peak_gpu_memory_bytes"):
        lines += ["", f"flashcore peak GPU memory (whole device, cudaMemGetInfo): "
                      f"{ours['peak_gpu_memory_bytes'] / 1e9:.1f} GB; KV pool {ours.get('kv_pool_tokens')} tokens"]
    text = "\n".join(lines) + "\n"
    if args.md:
        with open(args.md, "w") as f:
            f.write(text)
    else:
        print(text)

    if args.png:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 4.5))
        ctxs = [r["context"] for r in b1]
        ax.plot(ctxs, [r["ms_per_step_p50"] for r in b1], "o-", label="flashcore")
        if copy:
            ax.plot(ctxs, [r["floor_ms"] for r in b1], "k--", label=f"bandwidth floor ({copy:.0f} GB/s copy)")
        for mode, style in (("eager", "s-"), ("compile", "^-")):
            pts = [(c, hf_decode(mode, c)) for c in ctxs]
            pts = [(c, v) for c, v in pts if v is not None]
            if pts:
                ax.plot([c for c, _ in pts], [v for _, v in pts], style, label=f"HF transformers {mode}")
        ax.set_xlabel("context length (tokens)")
        ax.set_ylabel("decode ms/token (batch 1, p50)")
        ax.set_title(f"{ours.get('model')} on {ours.get('device')}")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.png, dpi=120)


if __name__ == "__main__":
    main()
