"""What Windows and macOS would do differently, simulated on this machine (docs/PLATFORMS.md).

- POSIX-only modules: a real `python -m trainer` with resource, fcntl, termios, pwd and grp made
  unimportable imports every trainer and bpy-free add-on module and trains;
- a dataset and run directory whose names have spaces and non-ASCII letters, with stdout encoded as
  on a Windows pipe (cp1252);
- the memory figure's readers, one per platform.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import ENV, REPO, error_lines, run_trainer
from scenes import write_sphere_dataset

from trainer import train as train_module
from trainer.io.gridfile import load_grid

POSIX_ONLY = ("resource", "fcntl", "termios", "pwd", "grp")
AABB = [[-1, -1, -1], [1, 1, 1]]
SHORT = ["--preset", "tiny", "--set", "steps=20", "--set", "upsample_at=[10]", "--set", "prune_at=[5]",
         "--set", "batch_rays=256", "--device", "cpu", "--threads", "1"]

# Run with `python -c BLOCKED MODULES ARGS...`: hides the POSIX-only modules (also from code that
# catches ImportError, as on Windows), imports MODULES (comma-separated), then runs `python -m trainer ARGS`.
BLOCKED = f"""
import importlib, importlib.abc, runpy, sys
POSIX_ONLY = {set(POSIX_ONLY)!r}

class Windows(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in POSIX_ONLY:
            raise ModuleNotFoundError(f"No module named {{name!r}} (simulated Windows)", name=name)
        return None

for loaded in [m for m in sys.modules if m.partition(".")[0] in POSIX_ONLY]:
    del sys.modules[loaded]
sys.meta_path.insert(0, Windows())
for name in POSIX_ONLY:
    try:
        importlib.import_module(name)
    except ImportError:
        pass
    else:
        raise SystemExit(f"{{name}} is still importable")
for module in sys.argv[1].split(","):
    importlib.import_module(module)
sys.argv = ["trainer", *sys.argv[2:]]
runpy.run_module("trainer", run_name="__main__", alter_sys=True)
"""


def module_names() -> list[str]:
    """Every module of trainer/ and the add-on's bpy-free packages (utils/, io/)."""
    files = [*sorted((REPO / "trainer").glob("*.py")), *sorted((REPO / "blender_plenox" / "utils").glob("*.py")),
             *sorted((REPO / "blender_plenox" / "io").glob("*.py"))]
    names = [".".join(f.relative_to(REPO).with_suffix("").parts) for f in files]
    return [n.removesuffix(".__init__") for n in names if n != "trainer.__main__"]


def module_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Import statements that run when the module is imported (not inside a function or class body)."""
    found: list[ast.Import | ast.ImportFrom] = []
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            stack.extend(ast.iter_child_nodes(node))
    return found


def test_no_posix_only_module_is_imported_at_module_level() -> None:
    offenders = []
    for path in [*(REPO / "trainer").rglob("*.py"), *(REPO / "blender_plenox").rglob("*.py")]:
        for node in module_level_imports(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            offenders += [f"{path.relative_to(REPO)}:{node.lineno} {n}" for n in names
                          if n.partition(".")[0] in POSIX_ONLY]
    assert offenders == []


def test_module_level_import_finder_sees_guarded_imports() -> None:
    tree = ast.parse("try:\n    import fcntl\nexcept ImportError:\n    pass\ndef f():\n    import pwd\n")
    assert [a.name for node in module_level_imports(tree) for a in node.names] == ["fcntl"]  # type: ignore[union-attr]


def test_trainer_imports_and_trains_without_posix_only_modules(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "run"
    write_sphere_dataset(data, n_train=8, n_test=2, width=16, height=16, aabb=AABB)
    modules = module_names()
    assert {"trainer.train", "trainer.parent_watch", "blender_plenox.utils.trainer_process",
            "blender_plenox.io.grid_reader"} <= set(modules)
    result = subprocess.run(
        [sys.executable, "-c", BLOCKED, ",".join(modules), "train", "--data", str(data), "--out", str(out), *SHORT,
         "--progress", "none"],
        check=False, cwd=REPO, env={**ENV, "PLENOX_EXIT_WITH_PARENT": "1"}, capture_output=True, text=True,
        timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert load_grid(out / "grid.npz").metadata["step"] == 20
    metrics = json.loads((out / "metrics.json").read_text())
    assert all(stage["peak_rss_mb"] > 0 for stage in metrics["stages"])   # from /proc, resource unneeded


def test_spaces_and_non_ascii_letters_in_paths(tmp_path: Path) -> None:
    base = tmp_path / "Mes données 3D"
    data, out = base / "scène ü", base / "run ü 試"
    write_sphere_dataset(data, n_train=8, n_test=2, width=16, height=16, aabb=AABB)
    result = run_trainer("train", "--data", data, "--out", out, *SHORT, "--progress", "json")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "grid.npz").is_file() and sorted(p.name for p in (out / "renders").iterdir()) == [
        "test_000.png", "test_001.png"]
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["test"]["views"] == 2
    assert Path(metrics["test"]["per_view"][0]["image"]).parent.parent == data
    assert json.loads((out / "run.json").read_text(encoding="utf-8"))["data"] == str(data)
    # a Windows pipe: stdout in the ANSI code page, which has no 試; the paths must not break the output
    windows_pipe = {**ENV, "PYTHONIOENCODING": "cp1252"}
    evaluated = run_env(windows_pipe, "eval", "--run", out, "--threads", "1")
    assert evaluated.returncode == 0 and error_lines(evaluated.stderr) == [], evaluated.stderr[-2000:]
    assert "PSNR" in evaluated.stdout
    for args in (("info", out), ("info", out / "grid.npz"), ("info", out, "--json")):
        shown = run_env(windows_pipe, *args)
        assert shown.returncode == 0 and error_lines(shown.stderr) == [], shown.stderr[-2000:]
    summary = json.loads(run_env(windows_pipe, "info", out, "--json").stdout)
    assert summary["run"]["data"] == str(data) and summary["grid"]["voxels"] > 0
    assert summary["path"] == str(out)  # the directory itself, beside run.json's contents


def run_env(env: dict[str, str], *args: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "trainer", *map(str, args)], check=False, cwd=REPO, env=env,
                          capture_output=True, text=True, encoding="cp1252", errors="replace", timeout=300)


# --- memory figure ----------------------------------------------------------------------------------


def proc_status_mb(field: str) -> float:
    """An independent reading: /proc/self/status gives VmRSS (now) and VmHWM (peak) in kB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(field)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_memory_readers() -> None:
    rss, peak = proc_status_mb("VmRSS"), proc_status_mb("VmHWM")
    assert train_module.current_rss_mb() == pytest.approx(rss, rel=0.1)
    assert train_module._rusage_peak_mb() == pytest.approx(peak, rel=0.1)   # ru_maxrss: KiB on Linux
    assert train_module._rusage_peak_mb("darwin") == pytest.approx(peak / 1024, rel=0.1)   # bytes on macOS
    assert train_module._windows_peak_mb() is None


def test_memory_figure_falls_back_then_gives_up(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(train_module, "_proc_rss_mb", lambda: None)      # macOS: no /proc
    assert train_module.current_rss_mb() == train_module._rusage_peak_mb()
    for reader in ("_rusage_peak_mb", "_windows_peak_mb"):
        monkeypatch.setattr(train_module, reader, lambda *a: None)
    assert train_module.current_rss_mb() is None
    data = tmp_path / "data"
    write_sphere_dataset(data, n_train=4, n_test=1, width=12, height=12, aabb=AABB)
    from test_train import ListSink, small_config

    from trainer.io.data import load_dataset

    result = train_module.run_training(small_config(steps=6, upsample_at=[3], prune_at=[]), load_dataset(data),
                                       tmp_path / "run", ListSink(), resume=False,
                                       device=train_module.torch.device("cpu"))
    assert [stage["peak_rss_mb"] for stage in result.stats["stages"]] == [None, None]
