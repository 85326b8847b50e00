"""Builds the installable extension zip: blender_manifest.toml plus the contents of blender_plenox/ at
the zip root, and a copy of the repository's trainer/ package as bundled/trainer/ (the add-on runs it
with a Python that has torch; the repository keeps the one source), minus the manifest's [build]
paths_exclude_pattern (caches, tests, benchmarks).

    python scripts/build_extension.py [--out dist]      →  dist/blender_plenox-<version>.zip

Blender's own `blender --command extension build` needs the Blender executable, which the `bpy` module
does not ship; this does the same packaging with the standard library only.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "blender_plenox"
TRAINER = REPO / "trainer"
MANIFEST = REPO / "blender_manifest.toml"
# (folder in the repository, where its files go in the zip)
SOURCES = ((PACKAGE, ""), (TRAINER, "bundled/trainer/"))


def excluded(rel: str, is_dir: bool, patterns: list[str]) -> bool:
    """gitignore-style subset: a trailing '/' matches folders only, a leading '/' anchors at the root,
    anything else matches the name at any depth."""
    name = rel.rsplit("/", 1)[-1]
    for pattern in patterns:
        dir_only = pattern.endswith("/")
        pat = pattern.rstrip("/")
        if dir_only and not is_dir:
            continue
        if pat.startswith("/"):
            if fnmatch.fnmatchcase(rel, pat[1:]):
                return True
        elif fnmatch.fnmatchcase(name, pat):
            return True
    return False


def package_files(patterns: list[str]) -> list[tuple[Path, str]]:
    """(source path, name in the zip) of every file that goes in, sorted."""
    files = []
    for source, target in SOURCES:
        for dirpath, dirnames, filenames in os.walk(source):
            base = Path(dirpath).relative_to(source).as_posix()
            prefix = "" if base == "." else base + "/"
            dirnames[:] = sorted(d for d in dirnames if not excluded(prefix + d, True, patterns))
            files += [(Path(dirpath) / f, target + prefix + f)
                      for f in filenames if not excluded(prefix + f, False, patterns)]
    return sorted(files, key=lambda item: item[1])


def build(out_dir: Path) -> Path:
    manifest = tomllib.loads(MANIFEST.read_text(encoding="utf-8"))
    patterns = list(manifest.get("build", {}).get("paths_exclude_pattern", []))
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{manifest['id']}-{manifest['version']}.zip"
    fd, tmp = tempfile.mkstemp(dir=out_dir, suffix=".zip.tmp")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.write(MANIFEST, "blender_manifest.toml")
            for source, name in package_files(patterns):
                zf.write(source, name)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a release zip is for everyone to read
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "dist", help="output folder (default: dist/)")
    args = parser.parse_args(argv)
    print(build(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
