"""Energy networks for images and videos (the engine's own backbones)."""
from .image import GenerativeConvNet
from .video import SpatialTemporalConvNet

__all__ = ["GenerativeConvNet", "SpatialTemporalConvNet"]
