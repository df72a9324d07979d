"""Prepare ModelNet-layout shape data into the cached form ``ebm3d`` trains on.

Usage::

    python -m data_prep.modelnet --source <folder-or-archive> [--resolution 32 64] [--points 1024]
    python -m data_prep.modelnet --download --sha256 <hex> [--url ...]

The source is a folder in the ``<class>/{train,test}/<file>`` layout (OFF meshes or point files)
or a .zip / .tar(.gz) archive of one; an archive is extracted once (refusing any member that
would land outside the extraction folder) under ``<work>/extracted/``. ``--download`` fetches the
official ModelNet10 archive, checks its SHA-256 against ``--sha256`` (no checksum is published
for it, so the expected value must be given) and extracts it the same way. Prints the counts,
the cache folder and every skipped file with its reason; source files are never modified.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import tarfile
import urllib.request
from pathlib import Path

from ebmcore.cli_errors import cli_main
from ebmcore.errors import ConfigError, DataError
from ebmcore.io import safe_extract
from ebmcore.paths import cache_root

MODELNET10_URL = "http://3dvision.princeton.edu/projects/2014/3DShapeNets/ModelNet10.zip"


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def download(url: str, dest: Path, sha256: str, timeout: float = 60.0) -> Path:
    """Fetch ``url`` to ``dest``, hashing while writing; DataError (and no file) on a mismatch."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file() and sha256_of(dest) == sha256.lower():
        return dest
    part = dest.with_name(dest.name + ".part")
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(part, "wb") as out:
            for block in iter(lambda: resp.read(1 << 20), b""):
                h.update(block)
                out.write(block)
    except OSError as err:
        part.unlink(missing_ok=True)
        raise DataError(f"{url}: download failed ({err})") from None
    if h.hexdigest() != sha256.lower():
        part.unlink()
        raise DataError(f"{url}: SHA-256 {h.hexdigest()} does not match the expected {sha256.lower()}")
    part.replace(dest)
    return dest


def is_archive(path: Path) -> bool:
    """A zip (by its first bytes, so a truncated one counts) or a tar archive."""
    if not path.is_file():
        return False
    with open(path, "rb") as fh:
        if fh.read(4) in (b"PK\x03\x04", b"PK\x05\x06"):
            return True
    return tarfile.is_tarfile(path) or path.name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz"))


def extract_archive(archive: Path, work: Path) -> Path:
    """Extract ``archive`` once into ``work/extracted/<name>-<sha[:12]>``; DataError if refused."""
    digest = sha256_of(archive)
    target = work / "extracted" / f"{archive.name.split('.')[0]}-{digest[:12]}"
    done = target / ".extracted"
    if done.is_file() and done.read_text().strip() == digest:
        return target
    try:
        safe_extract(archive, target)
    except DataError as err:
        raise DataError(f"{archive}: refused to extract: {err}") from None
    done.write_text(digest)
    return target


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m data_prep.modelnet", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--source", type=Path, help="a folder in the ModelNet layout, or an archive of one")
    src.add_argument("--download", action="store_true", help="fetch the official ModelNet10 archive")
    p.add_argument("--url", default=MODELNET10_URL, help="archive URL for --download")
    p.add_argument("--sha256", help="expected SHA-256 of the downloaded archive (required with --download)")
    p.add_argument("--work", type=Path, help="where archives are stored and extracted "
                                              "(default: <cache_root>/raw)")
    p.add_argument("--out", type=Path, help="folder for the prepared dataset "
                                             "(default: <cache_root>/shapes/<name>-<fingerprint>)")
    p.add_argument("--name", help="cache entry name (default: the source folder's name)")
    p.add_argument("--resolution", type=int, nargs="+", default=[32], help="voxel grid sizes (default 32)")
    p.add_argument("--points", type=int, default=1024, help="points per shape, 0 for none (default 1024)")
    p.add_argument("--normalisation", default="sphere", choices=("sphere", "category_minmax"))
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--classes", nargs="+", help="only these class folders")
    p.add_argument("--no-fill", action="store_true", help="keep mesh voxelisations as surfaces")
    p.add_argument("--point-dilation", type=int, default=0, help="dilations of point occupancy grids")
    p.add_argument("--point-fill", action="store_true", help="fill cavities of point occupancy grids")
    p.add_argument("--max-per-class", type=int, help="at most this many files per class and split")
    p.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    p.add_argument("--force", action="store_true", help="rebuild even if the cache entry exists, and replace "
                                                        "a dataset of other settings in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def resolve_source(args: argparse.Namespace) -> Path:
    """The layout folder to build from: the given folder, or an extracted (downloaded) archive."""
    work = args.work or cache_root() / "raw"
    if args.download:
        if not args.sha256:
            raise ConfigError("--sha256: required with --download (the archive has no published checksum)")
        archive = download(args.url, work / Path(args.url).name, args.sha256)
        return extract_archive(archive, work)
    source = args.source
    if source.is_dir():
        return source
    if is_archive(source):
        return extract_archive(source, work)
    raise DataError(f"{source}: neither a folder nor a .zip/.tar archive")


def report(ds) -> str:
    m = ds.manifest
    lines = [f"prepared {m['n_shapes']} shapes, {m['n_skipped']} skipped -> {m.get('cache_dir')}"]
    for split, per_class in m["counts"].items():
        lines.append(f"  {split:5s} {sum(per_class.values()):6d}  " +
                     " ".join(f"{c}={n}" for c, n in per_class.items()))
    shapes = {f"voxels {r}^3": tuple(v.shape) for r, v in ds.voxels.items()}
    if ds.points is not None:
        shapes["points"] = tuple(ds.points.shape)
    lines.append("  tensors: " + ", ".join(f"{k} {v}" for k, v in shapes.items()))
    if m["skipped"]:
        lines.append("skipped:")
        lines += [f"  {s['file']}: {s['reason']}" for s in m["skipped"]]
    return "\n".join(lines)


@cli_main("data_prep.modelnet")
def main(argv: list[str]) -> int:
    from ebm3d.data.builder import BuildOptions, build_shapes

    args = parse_args(argv)
    folder = resolve_source(args)
    options = BuildOptions(
        resolutions=tuple(args.resolution), n_points=args.points, normalisation=args.normalisation,
        val_fraction=args.val_fraction, seed=args.seed,
        classes=tuple(args.classes) if args.classes else None, fill=not args.no_fill,
        point_dilation=args.point_dilation, point_fill=args.point_fill,
        max_per_class=args.max_per_class, workers=args.workers)
    name = args.name or (folder.name if args.source is None or args.source.is_dir()
                         else args.source.name.split(".")[0])
    ds = build_shapes(folder, options, name=name, cache_dir=args.out, force=args.force,
                      progress=not args.quiet)
    print(report(ds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
