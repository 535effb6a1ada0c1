#!/usr/bin/env bash
# Everything measured on the lent GPU, in parts that each fit one 10-minute device call (each
# piece time-boxed; core's boxes with its Wan rows add up to 850 s: where a call is cut short,
# the Wan rows come last and `wan` reruns them alone); tables are appended to $OUT/bench.txt.
# Usage on the device machine (diffusers etc. carried as wheels, see the device README):
#   bash scripts/gpu_bench.sh core      # compiled baseline tune + sample vs the targets, GPU tests, metrics,
#                                       # and Wan2.1-1.3B (random weights, 49x480x832): LoRA tune
#                                       # baseline vs DCT (the +% row), edit 50 CFG steps, FlowEdit
#   bash scripts/gpu_bench.sh wan       # the Wan rows alone (a rerun that fits one call)
#   bash scripts/gpu_bench.sh methods   # DCT / APLA / APLA+DCT step time + peak, paper-size VGTs
#   bash scripts/gpu_bench.sh long      # long video 120 f @ 512 + memory vs length, I2V reward step
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
r() { local t=$1; shift; echo "### $*" | tee -a "$OUT/bench.txt"; timeout "$t" "$@" 2>&1 | grep -v "it/s\]\|float32\|token_id" | tail -20 | tee -a "$OUT/bench.txt"; }
nvidia-smi --query-gpu=name,memory.total --format=csv | tee -a "$OUT/bench.txt"
# Wan2.1-T2V-1.3B's architecture (issue 27's targets): tune step + peak, DCT's share, edit, FlowEdit
wan() {
  r 180 python3 -m vcstudio bench tune --backbone wan --method baseline,dct --steps 3 --warmup 2
  r 150 python3 -m vcstudio bench sample --backbone wan
}
case "${1:-core}" in
  core)
    r 200 python3 -m vcstudio bench tune --compile yes --steps 5 --warmup 3
    r 200 python3 -m vcstudio bench sample --compile yes
    r 60 python3 -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider
    r 60 python3 -m vcstudio bench metrics --device cuda
    wan ;;
  wan)
    wan ;;
  methods)
    r 240 python3 -m vcstudio bench tune --method baseline,dct,apla,apla+dct --compile no --steps 3 --warmup 2
    r 150 python3 -m vcstudio bench tune --method apla --vgt-preset paper --compile no --steps 3 --warmup 2
    r 150 python3 -m vcstudio bench tune --method apla --vgt hyper --vgt-preset paper --compile no --steps 3 --warmup 2 ;;
  long)
    # 120 frames 512x512, window 16 stride 8, 50 CFG steps (15 windows x 50 U-Net calls)
    r 300 python3 -m vcstudio bench long
    # peak memory vs length (should differ by little more than the latents)
    r 120 python3 -m vcstudio bench long --frames 40,120 --steps 2
    r 120 python3 -m vcstudio bench i2v --backbone svd --reward-steps 2
    r 120 python3 -m vcstudio bench i2v --backbone ltx --reward-steps 2 ;;
  *) echo "usage: $0 core|wan|methods|long" >&2; exit 2 ;;
esac
