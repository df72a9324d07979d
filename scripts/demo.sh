#!/usr/bin/env bash
# The main job on built-in data (no download). Each run leaves runs/<name>/ with its resolved
# config, checkpoint, metrics.csv, curves.png and samples (arrays and PNG).
#   1. image EBM: texture synthesis and inpainting (runs/texture_demo)
#   2. generative VoxelNet: multigrid synthesis of generated chairs (runs/voxelnet_demo)
#   3. generative PointNet: point-cloud chairs (runs/pointnet_demo)
#   4. EBM-IOC: trajectory prediction on a synthetic NGSIM-format recording (runs/ioc_demo)
# Pass a subset of the names (texture voxelnet pointnet ioc) to run only those.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
BIN=.venv/bin
parts=${*:-texture voxelnet pointnet ioc}

for part in $parts; do
  case $part in
    texture)
      echo "== image EBM: texture synthesis (runs/texture_demo)"
      $BIN/ebmcore train configs/texture_demo.yaml --fresh
      $BIN/ebmcore sample runs/texture_demo --n 4
      $BIN/ebmcore recover runs/texture_demo --mask center ;;
    voxelnet)
      echo "== generative VoxelNet: 3D synthesis on built-in chairs (runs/voxelnet_demo)"
      $BIN/ebm3d train configs/voxelnet_demo.yaml
      $BIN/ebm3d view runs/voxelnet_demo --png runs/voxelnet_demo/view.png ;;
    pointnet)
      echo "== generative PointNet: point-cloud synthesis on built-in chairs (runs/pointnet_demo)"
      $BIN/ebm3d train configs/pointnet_demo.yaml
      $BIN/ebm3d view runs/pointnet_demo --png runs/pointnet_demo/view.png ;;
    ioc)
      echo "== EBM-IOC: trajectory prediction on the built-in recording (runs/ioc_demo)"
      $BIN/ebmtraj prepare configs/ioc_demo.yaml
      $BIN/ebmtraj train configs/ioc_demo.yaml
      $BIN/ebmtraj evaluate configs/ioc_demo.yaml
      $BIN/ebmtraj view configs/ioc_demo.yaml --index 0 ;;
    *) echo "unknown demo part $part (use texture voxelnet pointnet ioc)" >&2; exit 2 ;;
  esac
done
echo "demo done: see runs/*/ (samples, curves.png, view.png)"
