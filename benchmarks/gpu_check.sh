#!/usr/bin/env bash
# The GPU check: on a CUDA machine, in at most about 8 minutes,
#   1. the engine's training tests on CUDA (EBM_TEST_DEVICE=cuda),
#   2. a few training updates of each paper config (generative VoxelNet and PointNet at their
#      published sizes) with their throughput and peak memory (process RSS and CUDA allocator).
# Run it from the repository root after `make setup` with a CUDA build of torch (README, "GPU users"):
#   bash benchmarks/gpu_check.sh            # output also goes to benchmarks/out/gpu_check.txt
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
mkdir -p benchmarks/out
exec > >(tee benchmarks/out/gpu_check.txt) 2>&1

echo "== machine"
date -u
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi: not found"
"$PY" - <<'EOF' || exit 1
import sys
import torch
print(f"torch {torch.__version__}, CUDA build {torch.version.cuda}, available: {torch.cuda.is_available()}")
if not torch.cuda.is_available():
    sys.exit("gpu_check: no CUDA device visible to torch; install the CUDA build of torch (README)")
print(torch.cuda.get_device_name(0))
EOF

status=0
echo "== engine tests on CUDA"
EBM_TEST_DEVICE=cuda timeout 240 "$PY" -m pytest -q -p no:cacheprovider tests/ebmcore || status=1

echo "== generative VoxelNet, paper config (batch 20, 20 Langevin steps, 3 timed updates)"
timeout 120 "$PY" benchmarks/bench_voxelnet_train.py --device cuda --configs paper --iters 3 \
    --paper-batch 20 --paper-langevin 20 || status=1

echo "== generative PointNet, paper config (batch 128, 64 Langevin steps, 2048 points, 3 timed updates)"
timeout 120 "$PY" benchmarks/bench_pointnet_train.py --device cuda --only paper --iters 3 \
    --paper-batch 128 --paper-langevin 64 --paper-points 2048 || status=1

echo "== gpu_check: $([ $status = 0 ] && echo passed || echo FAILED)"
exit $status
