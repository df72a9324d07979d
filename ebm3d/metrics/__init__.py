"""Metrics for 3D shapes.

Point clouds (PointFlow protocol): Chamfer distance (squared), EMD (exact, or the approximate
matcher), MMD / COV / 1-NNA from distance matrices, JSD on a 28^3 grid.
Voxels: IoU, average per-voxel error, inception score, nearest training neighbours.
"""
from ebm3d.metrics.chamfer import chamfer_distance, pairwise_chamfer
from ebm3d.metrics.emd import approxmatch_emd, emd, pairwise_emd
from ebm3d.metrics.pointcloud import (
    DistanceMatrices,
    MmdCov,
    compute_all_metrics,
    jensen_shannon,
    jsd_between_sets,
    mmd_cov,
    one_nn_accuracy,
    one_nn_accuracy_sides,
)
from ebm3d.metrics.voxel import (
    InceptionScore,
    Neighbours,
    classifier_probabilities,
    inception_score,
    nearest_training_neighbours,
    pairwise_iou_distance,
    per_voxel_error,
    voxel_iou,
)

__all__ = [
    "DistanceMatrices",
    "InceptionScore",
    "MmdCov",
    "Neighbours",
    "approxmatch_emd",
    "chamfer_distance",
    "classifier_probabilities",
    "compute_all_metrics",
    "emd",
    "inception_score",
    "jensen_shannon",
    "jsd_between_sets",
    "mmd_cov",
    "nearest_training_neighbours",
    "one_nn_accuracy",
    "one_nn_accuracy_sides",
    "pairwise_iou_distance",
    "pairwise_chamfer",
    "pairwise_emd",
    "per_voxel_error",
    "voxel_iou",
]
