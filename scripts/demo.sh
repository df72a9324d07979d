#!/usr/bin/env bash
# The main job on built-in data (no download): image-EBM texture synthesis and recovery.
# Each run leaves runs/<name>/ with samples (PNG), metrics.csv and curves.png.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

echo "== image EBM: texture synthesis (runs/texture_demo)"
$PY -m ebmcore.cli train configs/texture_demo.yaml --fresh
$PY -m ebmcore.cli sample runs/texture_demo --n 4
$PY -m ebmcore.cli recover runs/texture_demo --mask center
echo "demo done: see runs/*/samples, runs/*/curves.png"
