"""Showing scenes in an Open3D window, and rendering the same scene to PNG headless.

Both use Open3D's legacy ``visualization.Visualizer`` (OpenGL through GLFW/X11). Headless
rendering needs an X server: when ``DISPLAY`` is unset, :func:`ensure_display` starts ``Xvfb``
(Debian package ``xvfb``) as a child process with ``-displayfd`` (so it picks a free display
number itself), sets ``DISPLAY`` for this process, and stops the server at exit. Running under
``xvfb-run -a`` works the same way, since it sets ``DISPLAY`` first.

Cameras ("view"): ``front`` looks along +y (x to the right, z up); ``iso`` looks from the front
and 27 degrees above, with every item turned 35 degrees about its vertical axis; ``top`` looks
down the z axis. The scene's columns run along x and rows down z (see :mod:`.layout`).
"""
from __future__ import annotations

import atexit
import os
import select
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from .layout import Scene, layout, sample_rows

VIEWS = {  # camera direction (from the scene towards the eye), up, yaw of each item (degrees)
    "front": ((0.0, -1.0, 0.0), (0.0, 0.0, 1.0), 0.0),
    "iso": ((0.0, -1.0, 0.5), (0.0, 0.0, 1.0), -35.0),
    "top": ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0), 0.0),
}
CELL_PX = 240

_xvfb: subprocess.Popen | None = None
_xvfb_display = ""


def _stop_xvfb() -> None:
    global _xvfb
    if _xvfb is not None and _xvfb.poll() is None:
        _xvfb.terminate()
        try:
            _xvfb.wait(5)
        except subprocess.TimeoutExpired:
            _xvfb.kill()
    _xvfb = None


def ensure_display(screen: str = "2560x2560x24", timeout: float = 15.0) -> str:
    """Return ``$DISPLAY``, first starting a private Xvfb server if it is unset."""
    global _xvfb, _xvfb_display
    if os.environ.get("DISPLAY"):
        return os.environ["DISPLAY"]
    if _xvfb is not None and _xvfb.poll() is None:  # ours, still running
        os.environ["DISPLAY"] = _xvfb_display
        return _xvfb_display
    exe = shutil.which("Xvfb")
    if exe is None:
        raise RuntimeError("no DISPLAY and no Xvfb: install the 'xvfb' package or run under a display")
    read_fd, write_fd = os.pipe()
    try:
        _xvfb = subprocess.Popen([exe, "-displayfd", str(write_fd), "-screen", "0", screen,
                                  "-nolisten", "tcp"], pass_fds=(write_fd,),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(write_fd)
        number = b""
        while not number.endswith(b"\n"):
            ready, _, _ = select.select([read_fd], [], [], timeout)
            chunk = os.read(read_fd, 16) if ready else b""
            if not chunk:
                _stop_xvfb()
                raise RuntimeError(f"Xvfb did not report a display within {timeout} s")
            number += chunk
    finally:
        os.close(read_fd)
    atexit.register(_stop_xvfb)
    _xvfb_display = f":{int(number)}"
    os.environ["DISPLAY"] = _xvfb_display
    return _xvfb_display


def _quiet_runtime_dir() -> None:
    # GLFW prints "XDG_RUNTIME_DIR is invalid" without one; a private folder is enough.
    if not os.environ.get("XDG_RUNTIME_DIR"):
        os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="ebm3d-xdg-")


def as_scene(obj, voxel_mode: str = "mesh", threshold: float = 0.5, n_cols: int | None = None,
             view: str = "iso") -> Scene:
    """A Scene from a Scene, a table (list of rows), one item, or a batch / list of items.

    Items are turned by the view's yaw (see VIEWS); a ready Scene is used as it is.
    """
    from ebm3d.export import _array, kind_of

    if isinstance(obj, Scene):
        return obj
    if view not in VIEWS:
        raise ValueError(f"view {view!r} is not one of {sorted(VIEWS)}")
    opts = dict(voxel_mode=voxel_mode, threshold=threshold, yaw_deg=VIEWS[view][2])
    if isinstance(obj, list) and obj and isinstance(obj[0], list):
        return layout(obj, **opts)
    if not isinstance(obj, list):
        try:
            kind_of(obj)
            return layout([[obj]], **opts)
        except Exception:
            obj = list(_array(obj))
    return layout(sample_rows(obj, n_cols), **opts)


def _size(scene: Scene, width: int | None, height: int | None) -> tuple[int, int]:
    n_rows = 1 + max(c[0] for c in scene.cells)
    n_cols = 1 + max(c[1] for c in scene.cells)
    return (width or int(np.clip(n_cols * CELL_PX, 480, 2400)),
            height or int(np.clip(n_rows * CELL_PX, 360, 2400)))


def camera(scene: Scene, view: str, width: int, height: int, fov_deg: float = 30.0,
           margin: float = 1.1):
    """Open3D pinhole camera parameters that frame every cell of ``scene``.

    The camera looks at the centre of the cells' bounding box from direction ``VIEWS[view]``,
    at the distance where the box's projected half-width and half-height fit the horizontal and
    vertical fields of view (vertical ``fov_deg``), times ``margin``.
    """
    import open3d as o3d

    if view not in VIEWS:
        raise ValueError(f"view {view!r} is not one of {sorted(VIEWS)}")
    lo = np.min([c[2] for c in scene.cells], axis=0)
    hi = np.max([c[3] for c in scene.cells], axis=0)
    centre = (lo + hi) / 2
    front, up = (np.asarray(v, dtype=np.float64) for v in VIEWS[view][:2])
    front /= np.linalg.norm(front)
    z_c = -front  # the camera looks along its +z
    x_c = np.cross(-up, z_c)
    x_c /= np.linalg.norm(x_c)
    y_c = np.cross(z_c, x_c)  # image y runs down
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]) - centre
    half_w, half_h = np.abs(corners @ x_c).max(), np.abs(corners @ y_c).max()
    depth = np.abs(corners @ z_c).max()
    tan_v = np.tan(np.radians(fov_deg) / 2)
    tan_h = tan_v * width / height
    dist = margin * max(half_w / tan_h, half_h / tan_v) + depth
    eye = centre - z_c * dist
    rot = np.stack([x_c, y_c, z_c])
    extrinsic = np.eye(4)
    extrinsic[:3, :3], extrinsic[:3, 3] = rot, -rot @ eye
    focal = (height / 2) / tan_v
    params = o3d.camera.PinholeCameraParameters()
    params.intrinsic = o3d.camera.PinholeCameraIntrinsic(width, height, focal, focal,
                                                         width / 2 - 0.5, height / 2 - 0.5)
    params.extrinsic = extrinsic
    return params


def _setup(vis, scene: Scene, view: str, background, point_size: float, margin: float,
           width: int, height: int) -> None:
    params = camera(scene, view, width, height, margin=margin)
    for geom in scene.geometries:
        vis.add_geometry(geom)
    opt = vis.get_render_option()
    opt.background_color = np.asarray(background, dtype=np.float64)
    opt.point_size = point_size
    opt.mesh_show_back_face = True
    if not vis.get_view_control().convert_from_pinhole_camera_parameters(params, allow_arbitrary=True):
        raise RuntimeError("Open3D refused the camera parameters")


def render_image(obj, *, width: int | None = None, height: int | None = None, view: str = "iso",
                 voxel_mode: str = "mesh", threshold: float = 0.5, background=(1.0, 1.0, 1.0),
                 point_size: float = 4.0, margin: float = 1.1) -> np.ndarray:
    """Render headless to a uint8 (H, W, 3) image (starting Xvfb if there is no DISPLAY)."""
    import open3d as o3d

    scene = as_scene(obj, voxel_mode, threshold, view=view)
    width, height = _size(scene, width, height)
    ensure_display()
    _quiet_runtime_dir()
    vis = o3d.visualization.Visualizer()
    if not vis.create_window(window_name="ebm3d", width=width, height=height, visible=False):
        raise RuntimeError(f"Open3D could not open a window on DISPLAY={os.environ.get('DISPLAY')}")
    try:
        _setup(vis, scene, view, background, point_size, margin, width, height)
        vis.poll_events()
        vis.update_renderer()
        # The float buffer, not capture_screen_image: in one process, a capture_screen_image
        # before destroy_window left the next window's buffer blank in our checks.
        image = np.asarray(vis.capture_screen_float_buffer(do_render=True))
    finally:
        vis.destroy_window()
        del vis
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def render_png(obj, path: str | os.PathLike, **kwargs) -> Path:
    """Render ``obj`` (see :func:`as_scene`) headless and write it to ``path`` as PNG.

    Keyword arguments are those of :func:`render_image`.
    """
    from PIL import Image

    from ebmcore.io import atomic_write

    image = render_image(obj, **kwargs)
    return atomic_write(path, lambda tmp: Image.fromarray(image).save(tmp, format="PNG"))


def show(obj, *, width: int | None = None, height: int | None = None, view: str = "iso",
         voxel_mode: str = "mesh", threshold: float = 0.5, background=(1.0, 1.0, 1.0),
         point_size: float = 4.0, margin: float = 1.1, title: str = "ebm3d") -> None:
    """Open an interactive Open3D window on ``obj`` (needs a display); returns when it closes."""
    import open3d as o3d

    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        raise RuntimeError("no display for a window: use --png (headless) or set DISPLAY")
    scene = as_scene(obj, voxel_mode, threshold, view=view)
    width, height = _size(scene, width, height)
    vis = o3d.visualization.Visualizer()
    if not vis.create_window(window_name=title, width=width, height=height, visible=True):
        raise RuntimeError("Open3D could not open a window")
    try:
        _setup(vis, scene, view, background, point_size, margin, width, height)
        vis.run()
    finally:
        vis.destroy_window()
        del vis
