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
    return p.parse_args()


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
    device = args.device if torch.cuda.is_available() else "cpu"
    # Matmuls in true fp32 (no TF32) so the reference is an fp32 oracle.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = transformers.LlamaForCausalLM.from_pretrained(args.model, dtype=torch.float32,
                                                          attn_implementation="eager").to(device).eval()
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
            model_bf16 = transformers.LlamaForCausalLM.from_pretrained(
                args.model, dtype=torch.bfloat16, attn_implementation="eager").to(device).eval()
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
