"""Energy networks and classifiers for voxel grids.

- :mod:`.voxelnet`: the generative VoxelNet energy (the paper's network and a CPU default).
- :mod:`.reference`: the volumetric reference classifier of the inception score.
- :mod:`.pointnet`: the generative PointNet energy over point sets.
"""
from .pointnet import GenerativePointNet
from .reference import ReferenceClassifier
from .voxelnet import CPU_DEFAULT, PAPER, VoxelNet, VoxelNetSpec

__all__ = ["CPU_DEFAULT", "GenerativePointNet", "PAPER", "ReferenceClassifier", "VoxelNet", "VoxelNetSpec"]
