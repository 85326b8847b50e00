"""Layer 2: the add-on against fake-bpy-module 4.2 (its own environment, .venv-stubs).

fake-bpy-module 4.2 ships type stubs only (.pyi, with Python 3.12 syntax), so nothing of bpy can be
imported or run here; this layer checks the add-on statically: mypy with the stubs over the whole package
(every bpy name, base class, operator return value and register() call resolved against Blender's API),
and the conventions registration relies on, read from the source. Real registration runs in
tests/blender against Blender itself.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "blender_plenox"
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)
PROPERTY_FUNCS = {"BoolProperty", "IntProperty", "FloatProperty", "StringProperty", "EnumProperty",
                  "PointerProperty", "CollectionProperty", "FloatVectorProperty", "IntVectorProperty",
                  "BoolVectorProperty"}


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def test_stubs_are_installed() -> None:
    import importlib.util

    spec = importlib.util.find_spec("bpy")
    stubs = [Path(p) / "bpy-stubs" for p in sys.path if (Path(p) / "bpy-stubs").is_dir()]
    assert stubs, "fake-bpy-module is not installed in this environment (scripts/setup.sh)"
    assert spec is None or spec.origin is None, "a real bpy shadows the stubs: use .venv-stubs"


def test_mypy_with_the_stubs() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", "--show-error-codes", str(PACKAGE)],
        cwd=REPO, capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_package_init_imports_no_bpy_at_module_level() -> None:
    for path in [PACKAGE / "__init__.py", *PACKAGE.glob("utils/*.py"), *PACKAGE.glob("io/*.py")]:
        tree = _tree(path)
        top_level = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = {a.name.split(".")[0] for n in top_level if isinstance(n, ast.Import) for a in n.names}
        names |= {(n.module or "").split(".")[0] for n in top_level if isinstance(n, ast.ImportFrom) and not n.level}
        assert not names & {"bpy", "mathutils", "bpy_extras", "openvdb", "torch"}, path


def test_relative_imports_only_inside_the_package() -> None:
    for path in MODULES:
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.ImportFrom) and not node.level:
                assert (node.module or "").split(".")[0] != "blender_plenox", f"{path}: absolute self-import"


def _classes(path: Path) -> dict[str, ast.ClassDef]:
    return {n.name: n for n in _tree(path).body if isinstance(n, ast.ClassDef)}


def test_registered_class_names_follow_blender_rules() -> None:
    seen = 0
    for path in MODULES:
        for name, cls in _classes(path).items():
            fields = {t.id: v.value for n in cls.body if isinstance(n, ast.Assign)
                      for t in n.targets if isinstance(t, ast.Name) and isinstance(v := n.value, ast.Constant)}
            idname = fields.get("bl_idname")
            if "_OT_" in name:
                seen += 1
                prefix, op = name.split("_OT_")
                assert idname == f"{prefix.lower()}.{op}", f"{path}: {name} has bl_idname {idname!r}"
                assert "bl_label" in fields and ast.get_docstring(cls), f"{path}: {name} needs a label and a tooltip"
            if "_PT_" in name:
                seen += 1
                assert idname in (None, name) and "bl_label" in fields, f"{path}: panel {name}"
    assert seen >= 5


def test_every_property_has_a_tooltip_and_a_default() -> None:
    checked = 0
    for path in MODULES:
        for cls in _classes(path).values():
            for node in cls.body:
                if not (isinstance(node, ast.AnnAssign) and isinstance(node.annotation, ast.Call)):
                    continue
                func = node.annotation.func
                kind = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                if kind not in PROPERTY_FUNCS:
                    continue
                checked += 1
                keywords = {k.arg: k.value for k in node.annotation.keywords}
                where = f"{path.name}: {cls.name}.{ast.unparse(node.target)}"
                desc = keywords.get("description")
                assert isinstance(desc, (ast.Constant, ast.JoinedStr, ast.BinOp)), f"{where} has no tooltip"
                if kind not in {"PointerProperty", "CollectionProperty"}:
                    assert "default" in keywords, f"{where} has no explicit default"
    assert checked >= 20


@pytest.mark.parametrize("path", [PACKAGE / "__init__.py", PACKAGE / "operators" / "__init__.py"])
def test_registration_entry_points(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    assert re.search(r"^def register\(\)|^register, unregister = ", source, re.MULTILINE), path
    assert re.search(r"^def unregister\(\)|^register, unregister = ", source, re.MULTILINE), path


# What differs between Blender 4.2, 4.5 and 5.0 is handled in blender_plenox/compat.py only: these are
# the tell-tales of a version check (or of an API one version lacks) written somewhere else.
VERSION_TELLS = re.compile(
    r"bpy\.app\.version\b(?!_)|\bhasattr\(|expose_bundled_modules|media_type|use_nodes|volume_biased|"
    r"BLENDER_EEVEE"
)


def test_version_differences_live_in_compat() -> None:
    found = [f"{path.relative_to(REPO)}:{n}: {line.strip()}"
             for path in MODULES if path.name != "compat.py"
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if VERSION_TELLS.search(line.split("#", 1)[0])]
    assert not found, "\n".join(found)
