#!/usr/bin/env bash
# The checks to run when a GPU machine is lent to a session, in one call (figures go in the note).
#
#   bash bench/gpu_checks.sh            # on the GPU machine, from the repository root
#   bash bench/gpu_checks.sh 3 4        # only some stages
#
# Stages, most valuable first, each under its own time limit so that one failure or overrun still
# leaves the others' figures:
#   1. the CUDA-only tests (block streaming with a prefetch stream, fp8 storage in bf16, the extension's
#      prefetching block offload and plans carried out on the device, free memory counting own cache);
#   2. the full-size 14B R2V transformer at 720P, 5 s (121 frames): bf16 all on the GPU against the
#      plan chosen for a 24 GiB card (seconds per step, peak VRAM, the planner's estimate);
#   3. pipeline figures on the GPU: latent preview, overhead beyond the model forwards (tiny models),
#      and one R2V render at the official 720P size with tiny weights (absolute non-model cost);
#   4. the other memory policies at the size of stage 2 (fp8 storage, block streaming, both);
#   5. the full-size 14.3B extension DiT, one forward of a 5 s single-shot piece at 720P (7 condition +
#      33 noisy latent frames, 144 000 tokens): bf16 all on the GPU, then the official --low_vram (fp8
#      blocks offloaded to pinned host RAM, ~15 GB there), then bf16 block offload (~29 GB there);
#      expected ~180 s on an H200 (three ~40 s forwards, ~20-30 s of offload set-up each), so an overrun
#      cuts the last policy only;
#   6. the full-size 18.9B avatar DiT, one 81-frame window at 720x1280 (21 latent frames, 75 600 tokens):
#      bf16 all on the GPU (~38 GB of weights) against the plan chosen for a 24 GiB card (on a machine
#      with enough host RAM: bf16 block streaming, ~38 GB of weights in pinned host RAM); ~100 s expected.
# Stages 2, 4, 5 and 6 print the host RAM a policy needs before it moves weights to the CPU.
# Python packages the machine lacks travel as wheels in .whl/ (installed into /tmp/site first).
set -u
export PYTHONUNBUFFERED=1
log=${OUT:-/tmp}/gpu_checks.log
: >"$log"
say() { echo "$@" | tee -a "$log"; }
stage() {
    local limit=$1
    shift
    say "=== $* (limit ${limit} s)"
    local started=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee -a "$log"
    say "=== exit ${PIPESTATUS[0]} after $((SECONDS - started)) s"
}
wheels=${WHEELS:-.whl}
if [ -d "$wheels" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$wheels"/*.whl 2>&1 | tail -3
    export PYTHONPATH=/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$log"
python3 -c "import torch, diffusers, transformers, av; print('torch', torch.__version__, 'diffusers',
diffusers.__version__, 'transformers', transformers.__version__, 'av', av.__version__)" 2>&1 | tee -a "$log"
stages=" ${*:-1 2 3 4 5 6} "
[[ $stages == *" 1 "* ]] && stage 120 python3 -m pytest -q -p no:cacheprovider -m gpu tests/models/test_memory.py tests/models/test_extension_memory.py
[[ $stages == *" 2 "* ]] && stage 200 python3 bench/bench_full_size.py --device cuda --frames 121 --steps 1 \
    --policies gpu_resident,planned_24GiB
[[ $stages == *" 3 "* ]] && stage 150 python3 bench/bench_pipelines.py preview overhead fullres --device cuda \
    --repeats 3
[[ $stages == *" 4 "* ]] && stage 240 python3 bench/bench_full_size.py --device cuda --frames 121 --steps 1 \
    --policies fp8_storage,block_streaming,fp8+streaming
[[ $stages == *" 5 "* ]] && stage 200 python3 bench/bench_full_size.py --model extension --device cuda --steps 1 \
    --policies gpu_resident,low_vram,block_offload
[[ $stages == *" 6 "* ]] && stage 200 python3 bench/bench_full_size.py --model avatar --device cuda --steps 1 \
    --policies gpu_resident,planned_24GiB
say "=== total $SECONDS s"
