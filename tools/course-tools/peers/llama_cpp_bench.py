"""llama.cpp's side of `cargo xtask bench --compare`, through llama-cpp-python.

Reads a job (JSON, path in argv[1]): {"model": GGUF, "weights": LABEL, "threads", "prompts":
[{"name", "ids"}], "max_new_tokens", "runs", "warmup_runs"}. For each prompt, generates greedily
(top_k 1) from the given token ids with every EOS masked, so that each run makes exactly
max_new_tokens tokens, and prints one JSON object per measured run on stdout. Timings follow the
engine's definitions: time to first token from the call to the first token chosen, prefill =
prompt tokens / that time, decode = (tokens - 1) / (last - first).
"""

import json
import sys
import time

import llama_cpp.llama_cpp as llama_capi
import numpy as np
from llama_cpp import Llama, LogitsProcessorList


def without_extra_buffer_types():
    """llama.cpp's model parameters with use_extra_bufts off.

    Compiled on a CPU that reports AMX, llama.cpp puts weights in its AMX buffer type, whose
    kernels die with SIGILL where the kernel or a sandbox does not enable AMX (seen on the
    machine the book's figures come from). Without extra buffer types it runs its ordinary AVX2/AVX-512 kernels.
    """
    params = default_model_params()
    params.use_extra_bufts = False
    return params


default_model_params = llama_capi.llama_model_default_params
llama_capi.llama_model_default_params = without_extra_buffer_types


def main():
    with open(sys.argv[1]) as f:
        job = json.load(f)
    longest = max(len(p["ids"]) for p in job["prompts"]) + job["max_new_tokens"]
    llm = Llama(
        model_path=job["model"],
        n_ctx=longest + 16,
        n_batch=512,
        n_threads=job["threads"],
        n_threads_batch=job["threads"],
        verbose=False,
    )
    eos = [llm.token_eos()]

    def mask_eos(input_ids, scores):
        # scores: [V] for the last position; -inf on EOS, like the engine's ignore_eos.
        scores[eos] = -np.inf
        return scores

    for prompt in job["prompts"]:
        for run in range(job["warmup_runs"] + job["runs"]):
            # Forget the previous run's KV cache: llama-cpp-python would reuse a common prefix.
            llm.reset()
            started = time.perf_counter()
            times = []
            for _ in llm.generate(
                prompt["ids"],
                top_k=1,
                top_p=1.0,
                min_p=0.0,
                temp=0.0,
                repeat_penalty=1.0,
                reset=True,
                logits_processor=LogitsProcessorList([mask_eos]),
            ):
                times.append(time.perf_counter() - started)
                if len(times) == job["max_new_tokens"]:
                    break
            if run < job["warmup_runs"]:
                continue
            first, last = times[0], times[-1]
            print(
                json.dumps(
                    {
                        "system": "llama.cpp",
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
