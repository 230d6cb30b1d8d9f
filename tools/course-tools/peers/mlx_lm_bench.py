"""mlx-lm's side of `cargo xtask bench --compare`.

Reads a job (JSON, path in argv[1]): {"model": DIR, "weights": LABEL, "prompts": [{"name", "ids"}],
"max_new_tokens", "runs", "warmup_runs"}. For each prompt, generates greedily from the given token
ids (no tokenizer in the loop, so that every system sees the same ids) with every EOS masked, so
that each run makes exactly max_new_tokens tokens, and prints one JSON object per measured run on
stdout. Timings follow the engine's definitions: time to first token from the call to the first
token chosen, prefill = prompt tokens / that time, decode = (tokens - 1) / (last - first).
Threads: MLX's f32 GEMMs run on OpenBLAS, whose thread count the xtask sets
(OPENBLAS_NUM_THREADS), as for the engine.
"""

import json
import sys
import time

import mlx.core as mx
from mlx_lm import load
from mlx_lm.generate import stream_generate


def main():
    with open(sys.argv[1]) as f:
        job = json.load(f)
    model, tokenizer = load(job["model"])
    eos = sorted(tokenizer.eos_token_ids)

    def mask_eos(tokens, logits):
        # logits: [1, V]; -inf on every EOS id, like the engine's ignore_eos.
        logits[:, eos] = -float("inf")
        return logits

    for prompt in job["prompts"]:
        for run in range(job["warmup_runs"] + job["runs"]):
            started = time.perf_counter()
            times = []
            for _ in stream_generate(
                model,
                tokenizer,
                prompt=mx.array(prompt["ids"]),
                max_tokens=job["max_new_tokens"],
                logits_processors=[mask_eos],
            ):
                times.append(time.perf_counter() - started)
            if run < job["warmup_runs"]:
                continue
            first, last = times[0], times[-1]
            print(
                json.dumps(
                    {
                        "system": "mlx-lm",
                        "weights": job["weights"],
                        "prompt": prompt["name"],
                        "prompt_tokens": len(prompt["ids"]),
                        "generated_tokens": len(times),
                        "ttft_s": first,
                        "prefill_tok_s": len(prompt["ids"]) / first,
                        "decode_tok_s": (len(times) - 1) / (last - first) if len(times) > 1 else None,
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
