"""The extension manifest's fields and the built zip: the add-on's files at its root, the trainer's as
bundled/trainer/, and nothing else."""

from __future__ import annotations

import json
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


def test_permissions_declare_file_and_network_access() -> None:
    # files: datasets and runs; network: pip downloads PyTorch for the trainer environment
    for kind in ("files", "network"):
        reason = MANIFEST["permissions"][kind]
        assert 0 < len(reason) <= 64 and not reason.endswith("."), kind
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


def _tracked(folder: str) -> set[str]:
    """The files git tracks under a folder, relative to it: an independent listing of what is ours."""
    tracked = subprocess.run(["git", "ls-files", folder], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    return {p.removeprefix(folder + "/") for p in tracked if (REPO / p).is_file()}


def test_zip_holds_the_addon_the_trainer_and_nothing_else(built_zip: Path) -> None:
    with zipfile.ZipFile(built_zip) as zf:
        names = set(zf.namelist())
        assert zf.read("blender_manifest.toml") == (REPO / "blender_manifest.toml").read_bytes()
        assert zf.read("bundled/trainer/cli.py") == (REPO / "trainer" / "cli.py").read_bytes()
    assert _tracked("blender_plenox") <= names - {"blender_manifest.toml"}
    assert {"bundled/trainer/" + n for n in _tracked("trainer")} <= names
    assert "__init__.py" in names and "batch.py" in names
    for name in names:
        assert "__pycache__" not in name and not name.endswith(".pyc")
        assert not name.startswith(("tests/", "benchmarks/", "blender_plenox/", "trainer/"))
        if name.startswith("bundled/trainer/"):
            assert (REPO / "trainer" / name.removeprefix("bundled/trainer/")).is_file(), name
        else:
            assert name == "blender_manifest.toml" or (REPO / "blender_plenox" / name).is_file(), name
    # small: source only, no wheels, no test data
    assert built_zip.stat().st_size < 1_000_000


def test_unpacked_zip_imports_without_blender(built_zip: Path, tmp_path: Path) -> None:
    target = tmp_path / "blender_plenox"
    with zipfile.ZipFile(built_zip) as zf:
        zf.extractall(target)
    code = ("import blender_plenox, blender_plenox.utils.camera_math, blender_plenox.io.dataset_writer;"
            "print(blender_plenox.__file__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert Path(out.stdout.strip()).parent == target


def test_unpacked_zip_runs_its_own_trainer(built_zip: Path, tmp_path: Path) -> None:
    """The add-on finds the trainer copy it carries, and that copy runs (no checkout on any path)."""
    pytest.importorskip("torch")
    target = tmp_path / "ext" / "blender_plenox"
    with zipfile.ZipFile(built_zip) as zf:
        zf.extractall(target)
    code = ("import json, subprocess, sys; from blender_plenox.utils import trainer_process as tp;"
            "env = tp.child_env(); "
            "out = subprocess.run([sys.executable, '-m', 'trainer', '--help'], env=env, capture_output=True,"
            " text=True, cwd=sys.argv[1]);"
            "print(json.dumps([tp.trainer_root(), env['PYTHONPATH'], out.returncode, out.stdout[:200]]))")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=target.parent, capture_output=True,
                          text=True, check=True)
    root, pythonpath, code_, help_text = json.loads(proc.stdout.strip().splitlines()[-1])
    assert root == str(target / "bundled") and pythonpath == root
    assert code_ == 0 and "train" in help_text
