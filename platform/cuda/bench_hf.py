"""HF transformers' `generate` on the same GPU and weights: bf16, greedy, a fixed number of new
tokens (min_new_tokens = max_new_tokens, so no end-of-sequence token stops it), default
attention (sdpa) and the default dynamic cache; with --compiled, the static cache, with which
`generate` compiles its decoding step (`torch.compile`, CUDA graphs), single stream.

    python3 bench_hf.py MODEL_DIR --json OUT.json [--concurrency 1,2,...] [--compiled]
"""

import argparse
import json
import pathlib
import time

import torch
import transformers


def random_prompts(vocab, requests, length):
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, vocab, (requests, length), generator=generator).cuda()


def timed_generate(model, input_ids, new_tokens):
    torch.cuda.synchronize()
    started = time.perf_counter()
    output = model.generate(
        input_ids,
        attention_mask=torch.ones_like(input_ids),
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        pad_token_id=0,
    )
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    assert output.shape[1] == input_ids.shape[1] + new_tokens, output.shape
    return seconds


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model", type=pathlib.Path)
    parser.add_argument("--json", type=pathlib.Path, required=True)
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--concurrency", default="1,2,4,8,16,32,64")
    parser.add_argument("--batch-prompt-tokens", type=int, default=128)
    parser.add_argument("--batch-new-tokens", type=int, default=128)
    parser.add_argument("--compiled", action="store_true")
    args = parser.parse_args()

    model = transformers.AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.bfloat16)
    model = model.cuda().eval()
    vocab = model.config.vocab_size
    if args.compiled:
        # generate compiles the decoding step itself once the cache is static (its
        # compile_config: fullgraph, mode "reduce-overhead"), marking each CUDA-graph step.
        model.generation_config.cache_implementation = "static"

    prompt = random_prompts(vocab, 1, args.prompt_tokens)
    with torch.inference_mode():
        # Warm-up. Compiled: twice (the prefill's and the decode step's graphs), and as long as the
        # longest timed run. generate keeps its static cache while it is long enough and makes a
        # longer one otherwise, whose new shapes compile again: inside the timed run, when the
        # warm-up was shorter (2026-12-06: 3.7 tok/s, the compile counted as decoding).
        warm_up_tokens = args.new_tokens if args.compiled else 16
        for _ in range(2 if args.compiled else 1):
            timed_generate(model, prompt, warm_up_tokens)
        first = min(timed_generate(model, prompt, 1) for _ in range(3))
        whole = timed_generate(model, prompt, args.new_tokens)
    single = {
        "prompt_tokens": args.prompt_tokens,
        "new_tokens": args.new_tokens,
        "prefill_tokens_per_s": args.prompt_tokens / first,
        "decode_tokens_per_s": (args.new_tokens - 1) / (whole - first),
    }
    print(f"transformers single stream: {single}", flush=True)

    rows = []
    for requests in [int(c) for c in args.concurrency.split(",") if c]:
        prompts = random_prompts(vocab, requests, args.batch_prompt_tokens)
        with torch.inference_mode():
            timed_generate(model, prompts, 4)  # warm-up
            seconds = timed_generate(model, prompts, args.batch_new_tokens)
        tokens = requests * args.batch_new_tokens
        rows.append({"concurrency": requests, "tokens": tokens, "tokens_per_s": tokens / seconds})
        print(f"transformers generate x{requests}: {tokens / seconds:.1f} tok/s", flush=True)

    result = {
        "system": "transformers, static cache + torch.compile" if args.compiled else "transformers",
        "version": transformers.__version__,
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(),
        "single_stream": single,
        "batching": rows,
    }
    args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
