#!/usr/bin/env bash
# The main job on built-in data (no download). Each run leaves runs/<name>/ with its resolved
# config, checkpoint, metrics.csv, curves.png and samples (arrays and PNG).
#   1. image EBM: texture synthesis and inpainting (runs/texture_demo; a 256 px synthesis beside the
#      observed texture in synthesis_beside_observed.png)
#   2. generative VoxelNet: multigrid synthesis of generated chairs (runs/voxelnet_demo)
#   3. generative PointNet: point-cloud chairs (runs/pointnet_demo)
#   4. EBM-IOC: trajectory prediction on a synthetic NGSIM-format recording (runs/ioc_demo)
# Pass a subset of the names (texture voxelnet pointnet ioc) to run only those. The demo ends by
# printing where each picture is.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
BIN=.venv/bin
parts=${*:-texture voxelnet pointnet ioc}
mkdir -p runs
stamp=$(mktemp runs/.demo-start.XXXXXX)  # pictures newer than this are the demo's

for part in $parts; do
  case $part in
    texture)
      echo "== image EBM: texture synthesis (runs/texture_demo)"
      $BIN/ebmcore train configs/texture_demo.yaml --fresh
      # the ConvNet is fully convolutional: a 256 px texture grows from the 48 px training patch
      $BIN/ebmcore sample runs/texture_demo --n 1 --size 256 --steps 300
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
echo "demo done. Pictures:"
for part in $parts; do
  run=runs/${part}_demo
  [ -d "$run" ] || continue
  echo "  $part:"
  find "$run" -maxdepth 1 -name '*.png' -newer "$stamp" | sort | sed 's/^/    /'
  latest=$(find "$run" -path '*samples*' -name '*.png' -newer "$stamp" | sort | tail -n 1)
  if [ -n "$latest" ]; then echo "    $latest (last training samples)"; fi
done
rm -f "$stamp"
