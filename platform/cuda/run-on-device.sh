#!/usr/bin/env bash
# The device half of `cargo xtask gpu`: runs on the lent NVIDIA machine, in the root of the
# checkout the device tool sends, with `.gpu/` carried (platform/cuda/NOTES.md has the calls).
#
#   bash .gpu/run-on-device.sh stash              # keep this call's payload parts under /root
#   bash .gpu/run-on-device.sh run [PHASE...]      # the same, then assemble and run the phases
#
# Phases, in the order given: doctor, tests (or only tests-tf32, tests-float32), quantized-check
# (MLX's own quantized_matmul on the GPU vs its dequantized product), floors, kv-cache,
# paged-kernel (chapter 12's fused paged-attention kernel: its tests and the custom-kernel
# bridge's, then `bench paged-attention`), and a model name (smollm2-135m, qwen2-1.5b: the engine, mlx-lm and transformers on seeded
# random weights made from configs/NAME.json).
# Without phases: all of them, which takes longer than one call's 10 minutes.
#
# The payload (`cargo xtask gpu pack`) is one .tar.xz split into parts small enough for one call
# each. Assembled, it recreates the build machine's paths (payload file `paths`): the worktree the
# binaries were built from (tests find their fixtures through paths compiled into them) and the
# target directory's release/ (the binaries, and the mlx link their rpath follows). Results go to
# $OUT: summary.md, results.tar.gz (every JSON and log) and the last lines of each step.
set -uo pipefail

stash=/root/gpu-stash
home=/root/gpu
results=$home/results
out=${OUT:-/tmp/gpu-out}
mkdir -p "$stash" "$out"
cp .gpu/payload.part-* "$stash"/ 2>/dev/null
echo "stashed: $(ls "$stash" | wc -l) of $(cat .gpu/parts) parts"
[ "${1:-run}" = stash ] && exit 0
shift
phases=("$@")
[ ${#phases[@]} -eq 0 ] && phases=(doctor tests floors smollm2-135m qwen2-1.5b)

have=$(ls "$stash" | wc -l)
if [ "$have" -lt "$(cat .gpu/parts)" ]; then
    echo "error: only $have of $(cat .gpu/parts) payload parts are here; send the missing calls first (NOTES.md)"
    exit 1
fi

if [ ! -e "$home/assembled" ]; then
    started=$SECONDS
    rm -rf "$home" && mkdir -p "$home"
    cat "$stash"/payload.part-* | xz -d -T0 | tar -x -C "$home" || { echo "error: the payload does not unpack"; exit 1; }
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$home/site" "$home"/wheels/*.whl || exit 1
    # After pip, which would replace an existing mlx/ folder: the CUDA build of libmlx with its
    # headers (MLX compiles kernels at run time) and bundled LAPACK/BLAS.
    cp -a "$home/mlx-cuda/." "$home/site/"
    . "$home/paths"
    mkdir -p "$(dirname "$worktree")" "$(dirname "$target")"
    ln -sfn "$home/worktree" "$worktree"
    ln -sfn "$home/target" "$target"
    ln -sfn "$home/site/mlx" "$target/release/mlx"
    touch "$home/assembled"
    echo "assembled in $((SECONDS - started)) s"
fi

# CUDA's libraries come from the image's PyTorch (nvidia-* packages); the driver's from the system.
torch_site=$(python3 -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))')
cuda_libs=$(find "$torch_site/nvidia" -maxdepth 3 -type d -name lib | sort | paste -sd:)
export LD_LIBRARY_PATH="$home/site/mlx/lib:$cuda_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONPATH="$home/site" PYTHONUNBUFFERED=1 RUST_BACKTRACE=0
. "$home/paths"
release=$target/release
scripts=$worktree/platform/cuda
mkdir -p "$results"

# Packs what exists so far into $OUT, so that a step killed at the time limit still leaves the
# earlier results.
publish() {
    tar -czf "$out/results.tar.gz" -C "$home" results
    [ -e "$results/summary.md" ] && cp "$results/summary.md" "$out/"
}

# step NAME SECONDS COMMAND...: runs COMMAND with a time limit, logs it to results/NAME.log.
step() {
    local name=$1 limit=$2
    shift 2
    local started=$SECONDS
    timeout "$limit" "$@" >"$results/$name.log" 2>&1
    local status=$?
    echo "$name: exit $status, $((SECONDS - started)) s" | tee -a "$results/steps.txt"
    tail -n 3 "$results/$name.log"
    publish
    return $status
}

# Each test executable with its package's folder as working directory, as cargo runs it; in
# chapter order (mlx-doctor last), so that the slow first compilations of chapter 9's quantized
# kernels come late.
run_tests() {
    local status=0 package manifest_dir exe
    while read -r package manifest_dir exe; do
        echo "== $package ($exe)"
        (cd "$manifest_dir" && "$release/deps/$exe" --test-threads 1 --color never) || status=1
    done < <(sort "$home/tests.txt")
    return $status
}

# Chapter 12's fused paged-attention tests (their names hold "fused"), its model tests on the
# engine's fused path (cases named "Fused": decode steps of models whose head dimension the
# kernel takes run on it), and every test of the custom-kernel bridge; in float32, so that MLX's
# reference attention multiplies without TF32.
run_paged_kernel_tests() {
    local status=0 package manifest_dir exe filter
    while read -r package manifest_dir exe; do
        case $package in
            12-paged-kv-cache) filter="fused Fused" ;;
            mlx-custom-kernel) filter= ;;
            *) continue ;;
        esac
        echo "== $package ($exe) ${filter:+filter $filter}"
        (cd "$manifest_dir" && "$release/deps/$exe" --test-threads 1 --color never $filter) || status=1
    done < <(sort "$home/tests.txt")
    return $status
}

paged_kernel() {
    export -f run_paged_kernel_tests
    export home release
    step paged-kernel-tests 300 env MLX_ENABLE_TF32=0 TINY_LLM_PAGED_ATTENTION=fused bash -c run_paged_kernel_tests
    step paged-attention-bench 240 "$release/bench" paged-attention \
        --json "$results/paged-attention.json"
}

# MODE: tf32 (MLX's default on CUDA: float32 matmuls on TF32 tensor cores) or float32
# (MLX_ENABLE_TF32=0).
tests() {
    local mode=$1 tf32=1
    [ "$mode" = float32 ] && tf32=0
    # The real SmolLM2 first (its tests skip without it), rebuilt from its 4-bit conversion.
    if [ -d "$home/smollm2-4bit" ] && [ ! -d "$worktree/models/smollm2-135m-instruct" ]; then
        step smollm2-float32 120 python3 "$scripts/dequantize_smollm2.py" "$home/smollm2-4bit" \
            "$home/smollm2-float32-config.json" "$worktree/models/smollm2-135m-instruct"
    fi
    export -f run_tests
    export home release
    step "tests-$mode" 570 env MLX_ENABLE_TF32=$tf32 bash -c run_tests
}

# One architecture: seeded random bf16 weights, the same files for every system.
model() {
    local model=$1 dir=$home/models/$1 concurrency=1,2,4,8,16,32,64
    [ -d "$dir" ] || step "weights-$model" 180 python3 "$scripts/make_weights.py" \
        "$scripts/configs/$model.json" "$dir" || return
    step "engine-single-$model" 120 "$release/bench" single-stream --model-path "$dir" \
        --prompt-tokens 256 --new-tokens 128 --json "$results/engine-single-$model.json"
    step "engine-batching-$model" 300 "$release/bench" batching --model-path "$dir" --warmup \
        --concurrency "$concurrency" --prompt-tokens 128 --new-tokens 128 \
        --json "$results/engine-batching-$model.json"
    step "mlx-lm-$model" 300 python3 "$scripts/bench_mlx_lm.py" "$dir" --concurrency "$concurrency" \
        --json "$results/mlx-lm-$model.json"
    step "transformers-$model" 300 python3 "$scripts/bench_hf.py" "$dir" \
        --concurrency "$concurrency" --json "$results/transformers-$model.json"
    step "transformers-compiled-$model" 300 python3 "$scripts/bench_hf.py" "$dir" --compiled \
        --concurrency "" --json "$results/transformers-compiled-$model.json"
}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv \
    >"$results/gpu.txt" 2>&1
for phase in "${phases[@]}"; do
    case $phase in
        doctor) step doctor 120 "$release/mlx-doctor" --bench ;;
        tests) tests tf32; tests float32 ;;
        tests-tf32) tests tf32 ;;
        tests-float32) tests float32 ;;
        floors) step floors 180 python3 "$scripts/floors.py" "$scripts/configs/smollm2-135m.json" \
            "$scripts/configs/qwen2-1.5b.json" --json "$results/floors.json" ;;
        quantized-check) step quantized-check 120 env MLX_ENABLE_TF32=0 python3 \
            "$scripts/quantized_matmul_check.py" --json "$results/quantized-check.json" ;;
        kv-cache) step engine-kv-cache 180 "$release/bench" kv-cache \
            --model-path "$home/models/smollm2-135m" ;;
        paged-kernel) paged_kernel ;;
        *) model "$phase" ;;
    esac
done
step summary 60 python3 "$scripts/summarize.py" "$results"
publish
