#!/usr/bin/env bash
# Everything measured on the lent GPU in one go (each piece time-boxed); tables go to $OUT.
# Usage on the device machine: bash scripts/gpu_bench.sh  (diffusers etc. carried as wheels)
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
r() { local t=$1; shift; echo "### $*" | tee -a "$OUT/bench.txt"; timeout "$t" "$@" 2>&1 | grep -v "it/s\]\|float32\|token_id" | tail -20 | tee -a "$OUT/bench.txt"; }
nvidia-smi --query-gpu=name,memory.total --format=csv | tee -a "$OUT/bench.txt"
r 150 python3 -m vcstudio bench tune --method baseline,dct,apla --compile no --steps 3 --warmup 2
r 150 python3 -m vcstudio bench tune --method apla --vgt-preset paper --compile no --steps 3 --warmup 2
r 150 python3 -m vcstudio bench tune --method apla --vgt hyper --vgt-preset paper --compile no --steps 3 --warmup 2
r 200 python3 -m vcstudio bench sample --compile yes
r 200 python3 -m vcstudio bench tune --compile yes --steps 5 --warmup 3
r 60 python3 -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider
r 60 python3 -m vcstudio bench metrics --device cuda
# long video: 120 frames 512x512, window 16 stride 8, 50 CFG steps (~15 windows x 50 U-Net calls)
r 400 python3 -m vcstudio bench long
# peak memory vs length (should differ by little more than the latents)
r 150 python3 -m vcstudio bench long --frames 40,120 --steps 2
r 90 python3 -m vcstudio bench i2v --reward-steps 2
