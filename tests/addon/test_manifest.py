"""The extension manifest's fields and the built zip: the add-on's files at its root and nothing else."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MANIFEST = tomllib.loads((REPO / "blender_manifest.toml").read_text(encoding="utf-8"))
# Tags Blender's extension platform accepts for add-ons (its documented list).
ADDON_TAGS = {
    "3D View", "Add Curve", "Add Mesh", "Animation", "Bake", "Camera", "Compositing", "Development",
    "Game Engine", "Geometry Nodes", "Grease Pencil", "Import-Export", "Lighting", "Material", "Modeling",
    "Mesh", "Node", "Object", "Paint", "Pipeline", "Physics", "Render", "Rigging", "Scene", "Sculpt",
    "Sequencer", "System", "Text Editor", "Tracking", "User Interface", "UV",
}


def test_required_fields() -> None:
    for key in ("schema_version", "id", "version", "name", "tagline", "maintainer", "type",
                "blender_version_min", "license"):
        assert MANIFEST.get(key), f"manifest lacks {key}"
    assert MANIFEST["schema_version"] == "1.0.0"
    assert MANIFEST["id"] == "blender_plenox" == (REPO / "blender_plenox").name
    assert MANIFEST["type"] == "add-on"
    assert re.fullmatch(r"\d+\.\d+\.\d+", MANIFEST["version"])
    assert tuple(map(int, MANIFEST["blender_version_min"].split("."))) >= (4, 2, 0)
    assert all(lic.startswith("SPDX:") for lic in MANIFEST["license"])
    tagline = MANIFEST["tagline"]
    assert len(tagline) <= 64 and tagline[-1] not in ".!?,;:"
    assert set(MANIFEST.get("tags", [])) <= ADDON_TAGS


def test_permissions_declare_file_access() -> None:
    reason = MANIFEST["permissions"]["files"]
    assert 0 < len(reason) <= 64 and not reason.endswith(".")
    assert set(MANIFEST["permissions"]) <= {"files", "network", "clipboard", "camera", "microphone"}


def test_build_leaves_out_tests_caches_and_benchmarks() -> None:
    patterns = MANIFEST["build"]["paths_exclude_pattern"]
    for needed in ("__pycache__/", "/tests/", "/benchmarks/"):
        assert needed in patterns


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # a stray cache inside the package must not be packed
    cache = REPO / "blender_plenox" / "utils" / "__pycache__"
    cache.mkdir(exist_ok=True)
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "build_extension.py"), "--out", str(out)],
                          capture_output=True, text=True, check=True)
    zip_path = Path(proc.stdout.strip())
    assert zip_path == out / f"blender_plenox-{MANIFEST['version']}.zip"
    return zip_path


def test_zip_holds_the_addon_and_nothing_else(built_zip: Path) -> None:
    # independent listing: the add-on's files tracked by git (the source of truth for what is ours)
    tracked = subprocess.run(["git", "ls-files", "blender_plenox"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    expected = {p.removeprefix("blender_plenox/") for p in tracked if (REPO / p).is_file()}
    with zipfile.ZipFile(built_zip) as zf:
        names = set(zf.namelist())
        assert zf.read("blender_manifest.toml") == (REPO / "blender_manifest.toml").read_bytes()
    assert expected <= names - {"blender_manifest.toml"}
    assert "__init__.py" in names and "batch.py" in names
    for name in names:
        assert "__pycache__" not in name and not name.endswith(".pyc")
        assert not name.startswith(("tests/", "benchmarks/", "blender_plenox/"))
        assert name == "blender_manifest.toml" or (REPO / "blender_plenox" / name).is_file()


def test_unpacked_zip_imports_without_blender(built_zip: Path, tmp_path: Path) -> None:
    target = tmp_path / "blender_plenox"
    with zipfile.ZipFile(built_zip) as zf:
        zf.extractall(target)
    code = ("import blender_plenox, blender_plenox.utils.camera_math, blender_plenox.io.dataset_writer;"
            "print(blender_plenox.__file__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert Path(out.stdout.strip()).parent == target
