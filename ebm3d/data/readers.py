"""Readers for 3D shape files: OFF meshes, point files (PCD, PLY, XYZ, NPY) and 3D ShapeNets .mat grids.

Every reader validates what it returns and raises :class:`ebmcore.errors.DataError` naming the
file for truncated or corrupt input, non-finite coordinates and empty shapes. Source files are
only ever opened for reading.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import trimesh

from ebmcore.errors import DataError


def _fail(path: str | os.PathLike, reason: str) -> DataError:
    return DataError(f"{path}: {reason}")


def check_points(points: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """Return ``points`` as float32 (N, 3) or raise DataError if empty, mis-shaped, non-finite or
    degenerate (every point the same: zero extent)."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise _fail(path, f"expected points of shape (N, 3), got {points.shape}")
    if len(points) == 0:
        raise _fail(path, "no points")
    if not np.isfinite(points).all():
        bad = int(np.argmax(~np.isfinite(points).all(axis=1)))
        raise _fail(path, f"non-finite coordinate (NaN or inf) at point {bad}")
    extent = float(np.ptp(points, axis=0).max())
    if extent <= 1e-9 * max(1.0, float(np.abs(points).max())):
        raise _fail(path, f"degenerate point set: all {len(points)} points are identical (zero extent)")
    return points.astype(np.float32, copy=False)


def check_mesh(vertices: np.ndarray, faces: np.ndarray, path: str | os.PathLike) -> trimesh.Trimesh:
    """Build an unprocessed :class:`trimesh.Trimesh` after checking the arrays.

    Raises DataError for no vertices or faces, NaN/inf vertices, face indices out of range,
    or a mesh whose faces all have zero area.
    """
    if len(vertices) == 0 or len(faces) == 0:
        raise _fail(path, f"empty mesh ({len(vertices)} vertices, {len(faces)} faces)")
    if not np.isfinite(vertices).all():
        bad = int(np.argmax(~np.isfinite(vertices).all(axis=1)))
        raise _fail(path, f"non-finite vertex coordinate (NaN or inf) at vertex {bad}")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise _fail(path, f"face index outside 0..{len(vertices) - 1}")
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    if not (mesh.area_faces > 0).any():
        raise _fail(path, "every face has zero area")
    return mesh


# ---------------------------------------------------------------- OFF


def _off_lines(path: Path) -> list[str]:
    try:
        text = path.read_bytes().decode("ascii")
    except UnicodeDecodeError as err:
        raise _fail(path, f"not a text OFF file (byte {err.start} is not ASCII)") from None
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]


def parse_off(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Parse an OFF file into ``(vertices (V, 3) float64, faces (F, 3) int64)``.

    Polygons with k > 3 corners are split into a fan of k - 2 triangles (for quads this is the
    same split as ``torch_geometric.io.read_off``). Accepts the ModelNet quirk where the counts
    share the first line with the keyword (``OFF490 518 0``) and the COFF/NOFF variants (extra
    vertex columns are ignored). A strict parser of our own is used because trimesh's OFF loader
    silently accepts a file whose face list is cut short.
    """
    path = Path(path)
    lines = _off_lines(path)
    if not lines:
        raise _fail(path, "empty file")
    head = lines[0]
    keyword = head.split()[0] if head.split() else ""
    stem = keyword.rstrip("0123456789.-")
    if not stem.upper().endswith("OFF"):
        raise _fail(path, f"first line {head[:40]!r} does not start with OFF")
    counts_text = head[head.upper().index("OFF") + 3:].strip()
    body = lines[1:]
    if not counts_text:
        if not body:
            raise _fail(path, "missing the vertex/face counts line")
        counts_text, body = body[0], body[1:]
    try:
        n_vert, n_face = (int(tok) for tok in counts_text.split()[:2])
    except ValueError:
        raise _fail(path, f"bad counts line {counts_text[:40]!r}") from None
    if n_vert < 0 or n_face < 0:
        raise _fail(path, f"negative counts {n_vert} {n_face}")
    if len(body) < n_vert + n_face:
        raise _fail(path, f"truncated: header declares {n_vert} vertices and {n_face} faces, "
                          f"file has {len(body)} data lines")
    vertices = _parse_vertices(body[:n_vert], path)
    faces = _parse_faces(body[n_vert:n_vert + n_face], path, first_line=n_vert + 1)
    return vertices, faces


def _parse_vertices(lines: list[str], path: Path) -> np.ndarray:
    if not lines:
        return np.zeros((0, 3))
    try:
        rows = [line.split()[:3] for line in lines]
        if any(len(r) < 3 for r in rows):
            bad = next(i for i, r in enumerate(rows) if len(r) < 3)
            raise _fail(path, f"vertex {bad} has fewer than 3 coordinates")
        return np.array(rows, dtype=np.float64)
    except ValueError as err:
        if isinstance(err, DataError):
            raise
        raise _fail(path, f"non-numeric vertex coordinate ({err})") from None


def _parse_faces(lines: list[str], path: Path, first_line: int) -> np.ndarray:
    tris: list[np.ndarray] = []
    try:
        for i, line in enumerate(lines):
            tok = line.split()
            k = int(tok[0])
            if k < 3 or len(tok) < k + 1:
                raise _fail(path, f"face {i} (data line {first_line + i}) is not a polygon: {line[:40]!r}")
            idx = np.array(tok[1:k + 1], dtype=np.int64)
            if k == 3:
                tris.append(idx[None])
            else:  # fan: (0, j, j+1)
                tris.append(np.stack([np.full(k - 2, idx[0]), idx[1:-1], idx[2:]], axis=1))
    except ValueError as err:
        if isinstance(err, DataError):
            raise
        raise _fail(path, f"non-integer face entry ({err})") from None
    return np.concatenate(tris) if tris else np.zeros((0, 3), np.int64)


def read_off(path: str | os.PathLike) -> trimesh.Trimesh:
    """Read and validate an OFF mesh; returns an unprocessed trimesh (vertex order kept)."""
    vertices, faces = parse_off(path)
    return check_mesh(vertices, faces, path)


def read_mesh(path: str | os.PathLike) -> trimesh.Trimesh:
    """Read a mesh file: OFF with :func:`read_off`, OBJ/STL/PLY through trimesh; validated."""
    path = Path(path)
    if path.suffix.lower() == ".off":
        return read_off(path)
    try:
        loaded = trimesh.load(path, force="mesh", process=False)
    except Exception as err:  # trimesh raises many types for corrupt files
        raise _fail(path, f"cannot read mesh ({type(err).__name__}: {err})") from None
    faces = np.asarray(getattr(loaded, "faces", np.zeros((0, 3))), dtype=np.int64).reshape(-1, 3)
    return check_mesh(np.asarray(loaded.vertices, dtype=np.float64), faces, path)


# ---------------------------------------------------------------- point files

_PCD_TYPES = {("F", 4): "<f4", ("F", 8): "<f8", ("I", 1): "<i1", ("I", 2): "<i2", ("I", 4): "<i4",
              ("I", 8): "<i8", ("U", 1): "<u1", ("U", 2): "<u2", ("U", 4): "<u4", ("U", 8): "<u8"}


def _pcd_header(raw: bytes, path: Path) -> tuple[dict[str, list[str]], int]:
    """Parse PCD header lines up to DATA; return (fields, byte offset of the data)."""
    header: dict[str, list[str]] = {}
    pos = 0
    while True:
        end = raw.find(b"\n", pos)
        if end < 0:
            raise _fail(path, "truncated PCD header (no DATA line)")
        line = raw[pos:end].decode("ascii", errors="replace").strip()
        pos = end + 1
        if not line or line.startswith("#"):
            continue
        key, *vals = line.split()
        header[key.upper()] = vals
        if key.upper() == "DATA":
            return header, pos
        if len(header) > 20:
            raise _fail(path, "not a PCD file (no DATA line in the header)")


def read_pcd(path: str | os.PathLike) -> np.ndarray:
    """Read x, y, z of a PCD v0.5-0.7 file (``DATA ascii`` or ``binary``); float32 (N, 3).

    ``binary_compressed`` (LZF) files are read through Open3D. Raises DataError for a header
    without x/y/z, fewer or more data bytes or rows than POINTS declares, or non-finite coordinates.
    """
    path = Path(path)
    raw = path.read_bytes()
    if not raw:
        raise _fail(path, "empty file")
    header, offset = _pcd_header(raw, path)
    try:
        fields = header["FIELDS"]
        sizes = [int(s) for s in header["SIZE"]]
        types = header["TYPE"]
        counts = [int(c) for c in header.get("COUNT", ["1"] * len(fields))]
        n_points = int(header["POINTS"][0]) if "POINTS" in header else \
            int(header["WIDTH"][0]) * int(header.get("HEIGHT", ["1"])[0])
        mode = header["DATA"][0].lower()
    except (KeyError, ValueError, IndexError) as err:
        raise _fail(path, f"bad PCD header ({err})") from None
    if not {"x", "y", "z"} <= set(fields):
        raise _fail(path, f"PCD has no x/y/z fields (fields: {fields})")
    if n_points == 0:
        raise _fail(path, "no points")
    if mode == "binary_compressed":
        return _read_pcd_open3d(path)
    try:
        dtype = np.dtype([(f, _PCD_TYPES[(t.upper(), s)], (c,)) for f, s, t, c in
                          zip(fields, sizes, types, counts)])
    except KeyError as err:
        raise _fail(path, f"unsupported PCD field type {err}") from None
    if mode == "binary":
        need = n_points * dtype.itemsize
        have = len(raw) - offset
        if have < need:
            raise _fail(path, f"truncated: POINTS {n_points} needs {need} data bytes, file has {have}")
        if have > need:
            raise _fail(path, f"{have - need} data bytes after the {n_points} points the header declares "
                              f"(POINTS {n_points} needs {need} bytes, file has {have})")
        table = np.frombuffer(raw, dtype=dtype, count=n_points, offset=offset)
        xyz = np.stack([table[a][:, 0] for a in "xyz"], axis=1)
    elif mode == "ascii":
        rows = raw[offset:].decode("ascii", errors="replace").split("\n")
        rows = [r.split() for r in rows if r.strip()]
        width = sum(counts)
        if len(rows) < n_points:
            raise _fail(path, f"truncated: POINTS {n_points}, file has {len(rows)} rows")
        if len(rows) > n_points:
            raise _fail(path, f"data row {n_points} is beyond the {n_points} points the header declares "
                              f"(file has {len(rows)} data rows)")
        bad = next((i for i, r in enumerate(rows[:n_points]) if len(r) != width), None)
        if bad is not None:
            raise _fail(path, f"data row {bad} has {len(rows[bad])} values, expected {width}")
        cols = np.cumsum([0] + counts)[:-1]
        try:
            table = np.array(rows[:n_points], dtype=np.float64)
        except ValueError as err:
            raise _fail(path, f"non-numeric value ({err})") from None
        xyz = table[:, [cols[fields.index(a)] for a in "xyz"]]
    else:
        raise _fail(path, f"unknown PCD DATA mode {mode!r}")
    return check_points(xyz, path)


def _read_pcd_open3d(path: Path) -> np.ndarray:
    import open3d as o3d

    cloud = o3d.io.read_point_cloud(str(path), format="pcd")
    return check_points(np.asarray(cloud.points), path)


def read_ply_points(path: str | os.PathLike) -> np.ndarray:
    """Vertices of a PLY file (a point cloud or a mesh) as float32 (N, 3), via trimesh."""
    path = Path(path)
    try:
        loaded = trimesh.load(path, file_type="ply", process=False)
    except Exception as err:
        raise _fail(path, f"cannot read PLY ({type(err).__name__}: {err})") from None
    if not hasattr(loaded, "vertices"):
        raise _fail(path, f"PLY holds no vertices ({type(loaded).__name__})")
    return check_points(np.asarray(loaded.vertices), path)


def read_xyz(path: str | os.PathLike) -> np.ndarray:
    """Whitespace- or comma-separated text, one point a row; the first 3 columns are x, y, z."""
    path = Path(path)
    try:
        text = path.read_text(encoding="ascii")
    except UnicodeDecodeError:
        raise _fail(path, "not a text point file") from None
    rows = [r.replace(",", " ").split() for r in text.splitlines()]
    rows = [r for r in rows if r and not r[0].startswith("#")]
    if not rows:
        raise _fail(path, "no points")
    bad = next((i for i, r in enumerate(rows) if len(r) < 3), None)
    if bad is not None:
        raise _fail(path, f"row {bad + 1} has fewer than 3 values")
    try:
        xyz = np.array([r[:3] for r in rows], dtype=np.float64)
    except ValueError as err:
        raise _fail(path, f"non-numeric value ({err})") from None
    return check_points(xyz, path)


def read_npy_points(path: str | os.PathLike) -> np.ndarray:
    """A .npy array of shape (N, >=3) (extra columns such as normals are dropped); no pickles."""
    path = Path(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as err:
        raise _fail(path, f"cannot read .npy ({type(err).__name__}: {err})") from None
    if arr.ndim != 2 or arr.shape[1] < 3:
        raise _fail(path, f"expected an array of shape (N, 3+), got {arr.shape}")
    return check_points(arr[:, :3].astype(np.float64), path)


def read_points(path: str | os.PathLike) -> np.ndarray:
    """Read a point file by suffix (.pcd, .ply, .xyz/.pts/.txt, .npy); float32 (N, 3)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".pcd":
        return read_pcd(path)
    if suffix == ".ply":
        return read_ply_points(path)
    if suffix in (".xyz", ".pts", ".txt"):
        return read_xyz(path)
    if suffix == ".npy":
        return read_npy_points(path)
    raise _fail(path, f"unknown point file type {suffix!r}")


# ---------------------------------------------------------------- 3D ShapeNets .mat


SHAPENETS_SIZE = 30


def read_shapenets_mat(path: str | os.PathLike, pad: int = 1, size: int | None = SHAPENETS_SIZE) -> np.ndarray:
    """Read a 3D ShapeNets volumetric .mat (key ``instance``, 30^3) as uint8 {0,1}.

    The grid is padded with ``pad`` empty cells on each side (30^3 -> 32^3 by default).
    Raises DataError if the file is unreadable, lacks ``instance``, is not a cube, is a cube of
    another edge than ``size`` (None: any), holds values other than 0/1, or is empty.
    """
    from scipy.io import loadmat

    path = Path(path)
    try:
        mat = loadmat(path)
    except Exception as err:  # scipy raises ValueError, TypeError, MatReadError, OSError ...
        raise _fail(path, f"cannot read .mat ({type(err).__name__}: {err})") from None
    if "instance" not in mat:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise _fail(path, f"no key 'instance' (keys: {keys})")
    grid = np.asarray(mat["instance"])
    if grid.ndim != 3 or len(set(grid.shape)) != 1:
        raise _fail(path, f"'instance' is not a cubic grid: shape {grid.shape}")
    if size is not None and grid.shape[0] != size:
        raise _fail(path, f"'instance' is a {grid.shape[0]}^3 grid; 3D ShapeNets grids are {size}^3")
    values = np.unique(grid)
    if not np.isin(values, (0, 1)).all():
        raise _fail(path, f"'instance' holds values other than 0/1: {values[:5].tolist()}")
    if not values.any():
        raise _fail(path, "empty grid (no occupied voxel)")
    return np.pad(grid.astype(np.uint8), pad)
