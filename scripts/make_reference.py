#!/usr/bin/env python3
"""Reference logits from Hugging Face transformers, in the file format `flashcore validate` reads.

Writes REF.safetensors with
  input_ids  I64 [N]        the prompt
  logits     F32 [N, vocab] transformers' fp32 logits at every position (eager attention)
  inv_freq   F32 [head_dim/2] the model's RoPE inverse frequencies (checked by the CPU rope test)
  logits_bf16 F32 [N, vocab] (with --bf16-logits) the same model and prompt run by transformers in bf16
                            (weights and activations; values are bf16, stored F32), same positions as
                            `logits`: `flashcore validate --device cuda` then judges the engine's error
                            against fp32 relative to HF bf16's own (within 1.5x; docs/VALIDATION.md)

Two modes:
  make_reference.py --model DIR --out REF.safetensors [--tokens N] [--seed S]
      reference for an existing checkpoint directory
  make_reference.py --config CONFIG.json --model DIR --out REF.safetensors [--shard-size 60KB]
      first creates DIR: a random-weight LlamaForCausalLM of that config (hub-format config.json,
      weights stored in the config's torch_dtype, sharded with an index when --shard-size is given)

FP8 checkpoints (compressed-tensors "float-quantized", the format llm-compressor writes and vLLM reads):
  make_reference.py --config CONFIG.json --model DIR --out REF.safetensors --fp8 SCHEME [--fp8-scale-dtype D]
      creates the random model as above, then quantizes every attention and MLP projection to e4m3
      (torch.float8_e4m3fn) and rewrites DIR as one model.safetensors with a quantization_config:
        tensor-static    weights per tensor: scale = amax / 448, weight_scale shape [] (0-d); activations
                         static per tensor: input_scale [1] = amax of the projection's input / 448 over a
                         calibration prompt (seed + 2). Both scalar shapes the format allows are covered.
        channel-dynamic  weights per output channel: weight_scale [out, 1] = row amax / 448 (a zero row: 1);
                         activations dynamic per token (no input_scale)
      Scales are stored in --fp8-scale-dtype (float32 or bfloat16); the codes are the weights divided by
      the scale as stored (widened to fp32), clamped to +-448, cast to e4m3 (round to nearest even).
      lm_head and the embeddings stay in the config's torch_dtype ("ignore": ["lm_head"]).
  The reference of an FP8 checkpoint (created here or given with --model) is transformers' fp32 model on
  the DEQUANTIZED weights: w = e4m3.to(float32) * scale.to(float32), exactly what FlashCore's CPU backend
  computes with; logits_bf16 is the same model cast to bf16. transformers' own compressed-tensors loader is
  not used (it needs the compressed-tensors package and may dequantize in the scale's dtype).

Needs torch, transformers and safetensors (on the GPU machine: see shared/device.md).
"""
import argparse
import json
import os
import sys


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint directory (created when --config is given)")
    p.add_argument("--out", required=True, help="reference file to write (.safetensors)")
    p.add_argument("--config", help="hub-format config.json of a model to create with random weights")
    p.add_argument("--tokens", type=int, default=40, help="prompt length N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init-std", type=float, default=0.1,
                   help="std of random weights (larger than HF's 0.02 so logits have clear top-1s)")
    p.add_argument("--shard-size", help="save sharded with this max shard size (e.g. 60KB)")
    p.add_argument("--bf16-logits", action="store_true",
                   help="also store transformers' bf16 logits as logits_bf16 (F32 [N, vocab]) for validate's verdict")
    p.add_argument("--device", default="cuda", help="where the reference runs (falls back to cpu)")
    p.add_argument("--create-device", default="cpu",
                   help="where random weights are drawn (cuda for 8B-sized models; cpu keeps fixtures reproducible)")
    p.add_argument("--fp8", choices=["tensor-static", "channel-dynamic"],
                   help="with --config: quantize the projections into a compressed-tensors FP8 checkpoint")
    p.add_argument("--fp8-scale-dtype", choices=["float32", "bfloat16"], default="float32",
                   help="dtype of the stored weight_scale / input_scale tensors")
    args = p.parse_args()
    if args.fp8 and not args.config:
        p.error("--fp8 creates a checkpoint: give --config too (an existing FP8 --model needs no flag)")
    return args


E4M3_MAX = 448.0
PROJECTIONS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
               "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


def fp8_args(strategy, dynamic, observer):
    return {"actorder": None, "block_structure": None, "dynamic": dynamic, "group_size": None, "num_bits": 8,
            "observer": observer, "observer_kwargs": {}, "strategy": strategy, "symmetric": True, "type": "float"}


def quantization_config(scheme):
    static = scheme == "tensor-static"
    return {
        "config_groups": {"group_0": {
            "input_activations": fp8_args("tensor", False, "minmax") if static else fp8_args("token", True, None),
            "output_activations": None,
            "targets": ["Linear"],
            "weights": fp8_args("tensor" if static else "channel", False, "minmax"),
        }},
        "format": "float-quantized",
        "global_compression_ratio": None,
        "ignore": ["lm_head"],
        "kv_cache_scheme": None,
        "quant_method": "compressed-tensors",
        "quantization_status": "compressed",
    }


def read_checkpoint(model_dir):
    """Every tensor of model.safetensors or of the shards its index names."""
    from safetensors.torch import load_file
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    tensors = {}
    for name in files:
        tensors.update(load_file(os.path.join(model_dir, name)))
    return tensors, files


def dequantized_state(tensors, torch):
    """fp32 weights of every module: FP8 weights times their scale, both widened to fp32 (one multiply)."""
    state = {}
    for name, t in tensors.items():
        if name.endswith((".weight_scale", ".input_scale")):
            continue
        if t.dtype == torch.float8_e4m3fn:
            scale = tensors[name + "_scale"].to(torch.float32)  # [] / [1] per tensor, [out, 1] per channel
            state[name] = t.to(torch.float32) * (scale.reshape(-1, 1) if scale.numel() > 1 else scale.reshape(()))
        else:
            state[name] = t.to(torch.float32)
    return state


def build_model(hub_config, state, torch, transformers, dtype):
    """LlamaForCausalLM of `hub_config` (its quantization_config dropped) holding `state`, in `dtype`."""
    config = transformers.LlamaConfig(**{k: v for k, v in hub_config.items() if k != "quantization_config"},
                                      attn_implementation="eager")
    model = transformers.LlamaForCausalLM(config).to(torch.float32)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not (m == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise SystemExit(f"checkpoint does not match the model: missing {missing}, unexpected {unexpected}")
    if config.tie_word_embeddings:
        model.tie_weights()
    # RoPE's inv_freq stays fp32 as from_pretrained(dtype=...) leaves it (.to(dtype) would round it).
    inv_freq = model.model.rotary_emb.inv_freq.clone()
    model = model.to(dtype).eval()
    model.model.rotary_emb.inv_freq = inv_freq
    return model


def quantize_fp8(w, per_channel, scale_dtype, torch):
    """(codes e4m3, stored scale) of fp32 weight w [out, in]: the scale rounded to its storage dtype first,
    so that codes x stored scale is the dequantized weight."""
    amax = w.abs().amax(dim=1, keepdim=True) if per_channel else w.abs().amax().reshape(())
    scale = torch.where(amax > 0, amax / E4M3_MAX, torch.ones_like(amax))
    stored = scale.to(scale_dtype)
    codes = (w / stored.to(torch.float32)).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)
    return codes, stored


def make_fp8_checkpoint(args, torch, transformers):
    """Rewrites args.model (created by create_model) as a compressed-tensors FP8 checkpoint."""
    from safetensors.torch import save_file
    with open(os.path.join(args.model, "config.json")) as f:
        hub_config = json.load(f)
    tensors, files = read_checkpoint(args.model)
    scale_dtype = getattr(torch, args.fp8_scale_dtype)
    per_channel = args.fp8 == "channel-dynamic"
    out = {}
    for name, t in tensors.items():
        module = name[:-len(".weight")] if name.endswith(".weight") else None
        if module is not None and module.startswith("model.layers.") and module.endswith(PROJECTIONS):
            codes, scale = quantize_fp8(t.to(torch.float32), per_channel, scale_dtype, torch)
            out[name] = codes.contiguous()
            out[module + ".weight_scale"] = scale.contiguous()
        else:
            out[name] = t.contiguous()
    if args.fp8 == "tensor-static":
        # Static activation scales: the largest |input| of each projection over a calibration prompt, / 448,
        # observed on the dequantized model (as llm-compressor's minmax observer would, after weight quantization).
        model = build_model(hub_config, dequantized_state(out, torch), torch, transformers, torch.float32)
        amax = {}
        hooks = []
        for mod_name, mod in model.named_modules():
            if mod_name.startswith("model.layers.") and mod_name.endswith(PROJECTIONS):
                def hook(m, inputs, output, key=mod_name):
                    amax[key] = max(amax.get(key, 0.0), inputs[0].abs().max().item())
                hooks.append(mod.register_forward_hook(hook))
        gen = torch.Generator().manual_seed(args.seed + 2)
        calibration = torch.randint(0, hub_config["vocab_size"], (1, 64), generator=gen, dtype=torch.int64)
        with torch.no_grad():
            model(calibration)
        for h in hooks:
            h.remove()
        for key, value in amax.items():
            out[key + ".input_scale"] = torch.tensor([value / E4M3_MAX], dtype=torch.float32).to(scale_dtype)
        del model
    for name in files:
        os.remove(os.path.join(args.model, name))
    index = os.path.join(args.model, "model.safetensors.index.json")
    if os.path.exists(index):
        os.remove(index)
    save_file(out, os.path.join(args.model, "model.safetensors"), metadata={"format": "pt"})
    hub_config["quantization_config"] = quantization_config(args.fp8)
    with open(os.path.join(args.model, "config.json"), "w") as f:
        json.dump(hub_config, f, indent=2)
        f.write("\n")


def load_reference_model(args, torch, transformers, dtype, device):
    """transformers' model of args.model in `dtype`; an FP8 checkpoint is dequantized first (see above)."""
    with open(os.path.join(args.model, "config.json")) as f:
        hub_config = json.load(f)
    if "quantization_config" not in hub_config:
        return transformers.LlamaForCausalLM.from_pretrained(args.model, dtype=dtype,
                                                             attn_implementation="eager").to(device).eval()
    method = hub_config["quantization_config"].get("quant_method")
    if method != "compressed-tensors":
        raise SystemExit(f"{args.model}: quant_method {method!r}: only compressed-tensors FP8 is dequantized here")
    tensors, _ = read_checkpoint(args.model)
    return build_model(hub_config, dequantized_state(tensors, torch), torch, transformers, dtype).to(device)


DTYPES = {"bfloat16": "bfloat16", "float16": "float16", "float32": "float32"}


def create_model(args, torch, transformers):
    with open(args.config) as f:
        hub_config = json.load(f)
    torch.manual_seed(args.seed)
    config = transformers.LlamaConfig(**hub_config)
    config.initializer_range = args.init_std
    device = args.create_device if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = transformers.LlamaForCausalLM(config)
    with torch.no_grad():
        # HF initializes RMSNorm weights to ones; random ones make the tests see the weight multiply.
        for name, param in model.named_parameters():
            if "norm" in name:
                param.copy_(1.0 + 0.2 * torch.randn_like(param))
    dtype = getattr(torch, DTYPES[hub_config.get("torch_dtype", "float32")])
    model = model.to(dtype)
    kwargs = {"max_shard_size": args.shard_size} if args.shard_size else {}
    model.save_pretrained(args.model, **kwargs)
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    # Keep config.json exactly in the hub's format (transformers may rewrite keys, e.g. dtype).
    with open(os.path.join(args.model, "config.json"), "w") as f:
        json.dump(hub_config, f, indent=2)
        f.write("\n")
    gen = {"bos_token_id": hub_config.get("bos_token_id"), "eos_token_id": hub_config.get("eos_token_id"),
           "do_sample": True, "temperature": 0.6, "top_p": 0.9}
    with open(os.path.join(args.model, "generation_config.json"), "w") as f:
        json.dump(gen, f, indent=2)
        f.write("\n")


def main():
    args = parse_args()
    import torch
    import transformers
    from safetensors.torch import save_file

    if args.config:
        create_model(args, torch, transformers)
        if args.fp8:
            make_fp8_checkpoint(args, torch, transformers)
    device = args.device if torch.cuda.is_available() else "cpu"
    # Matmuls in true fp32 (no TF32) so the reference is an fp32 oracle.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = load_reference_model(args, torch, transformers, torch.float32, device)
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(args.seed + 1)
    input_ids = torch.randint(0, vocab, (args.tokens,), generator=gen, dtype=torch.int64)
    with torch.no_grad():
        logits = model(input_ids[None].to(device)).logits[0].float().cpu()
        tensors = {"input_ids": input_ids, "logits": logits.contiguous(),
                   "inv_freq": model.model.rotary_emb.inv_freq.float().cpu().contiguous()}
        rope = getattr(model.config, "rope_parameters", None) or getattr(model.config, "rope_scaling", None)
        del model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if args.bf16_logits:
            model_bf16 = load_reference_model(args, torch, transformers, torch.bfloat16, device)
            logits_bf16 = model_bf16(input_ids[None].to(device)).logits[0].float().cpu().contiguous()
            assert logits_bf16.shape == logits.shape, (logits_bf16.shape, logits.shape)
            tensors["logits_bf16"] = logits_bf16
            del model_bf16
    save_file(tensors, args.out, metadata={"transformers": transformers.__version__, "torch": torch.__version__,
                                           "model": os.path.basename(os.path.normpath(args.model))})
    top2 = logits.topk(2, dim=-1).values
    print(f"{args.out}: N={args.tokens} vocab={vocab} logits std={logits.std():.3f} "
          f"min top-2 gap={(top2[:, 0] - top2[:, 1]).min():.2e} "
          f"rope={rope}")
    if "logits_bf16" in tensors:
        # HF bf16's own error against fp32: the yardstick validate --device cuda measures the engine by.
        b = tensors["logits_bf16"].double()
        f = logits.double()
        logp_f, logp_b = torch.log_softmax(f, -1), torch.log_softmax(b, -1)
        kl = (logp_f.exp() * (logp_f - logp_b)).sum(-1).mean().item()
        print(f"{args.out}: HF bf16 vs fp32: rel_err={((b - f).norm() / f.norm()).item():.3e} mean_KL={kl:.3e} "
              f"top1_agree={(b.argmax(-1) == f.argmax(-1)).double().mean().item():.4f}")


if __name__ == "__main__":
    sys.exit(main())
