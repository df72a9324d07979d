"""Open3D viewers: geometry for voxels / meshes / points, side-by-side layouts, windows and
headless PNG rendering (Xvfb started when there is no display), and ``ebm3d view``."""
from .geometry import mesh_geometry, point_geometry, to_geometry, voxel_geometry
from .layout import Scene, layout, recovery_rows, sample_rows, superres_rows
from .render import ensure_display, render_image, render_png, show
from .view import load_target, view_main

__all__ = [
    "mesh_geometry", "point_geometry", "to_geometry", "voxel_geometry", "Scene", "layout",
    "recovery_rows", "sample_rows", "superres_rows", "ensure_display", "render_image", "render_png",
    "show", "load_target", "view_main",
]
