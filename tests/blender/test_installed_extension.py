"""The Blender user's path, end to end, from the built zip: Blender's own extension installer, the
add-on's Install Trainer Environment, then capture → train → import from the installed extension.

pip gets the packages from a local folder (through the preferences' pip Arguments, the same code path
a user's install takes), filled once per session from pip's cache, so CI does not download PyTorch
again. The run happens in a separate Python with a temporary Blender user folder and no checkout on
sys.path or PYTHONPATH.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TRAINER_VENV_PYTHON = REPO / ".venv" / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> Path:
    """torch (the build this checkout's .venv has, from where setup.sh got it), numpy, imageio, tqdm and
    their dependencies as wheel files."""
    if not TRAINER_VENV_PYTHON.is_file():
        pytest.skip(".venv (scripts/setup.sh) not present: no source for the torch wheel")
    version = subprocess.run([str(TRAINER_VENV_PYTHON), "-c", "import torch; print(torch.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    folder = tmp_path_factory.mktemp("wheels")
    subprocess.run([str(TRAINER_VENV_PYTHON), "-m", "pip", "download", "-q", "--disable-pip-version-check",
                    "-d", str(folder), f"torch=={version}", "numpy", "imageio>=2.30", "tqdm"],
                   check=True, timeout=900)
    return folder


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "build_extension.py"), "--out", str(out)],
                          capture_output=True, text=True, check=True)
    return Path(proc.stdout.strip())


def test_installed_extension_installs_its_trainer_and_trains(tmp_path, built_zip, wheelhouse):
    user = tmp_path / "Blender user"
    work = tmp_path / "Mes projets"
    user.mkdir()
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "BLENDER_PLENOX"))}
    env["BLENDER_USER_RESOURCES"] = str(user)
    env["PIP_CONFIG_FILE"] = os.devnull  # only the wheel folder the preferences name
    script = Path(__file__).with_name("installed_extension_run.py")
    proc = subprocess.run([sys.executable, str(script), str(built_zip), str(wheelhouse), str(work)],
                          check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("FOUND ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    found = json.loads(lines[-1].removeprefix("FOUND "))
    print(json.dumps(found, indent=1))

    ext_dir = Path(found["addon_file"]).parent
    assert not found["sys_path_has_checkout"]
    assert found["enabled"] and user in ext_dir.parents
    # the environment sits in the extension's user folder and was probed
    assert found["install"] == ["FINISHED"]
    env_root = Path(found["env_root"])
    assert env_root.parent == Path(found["extension_user_dir"]) and user in env_root.parents
    assert found["env_summary"].startswith("torch ") and "CPU" in found["env_summary"]
    assert not list(env_root.parent.glob("trainer_env.partial-*"))
    # the trainer runs from the zip's copy, with the environment's packages, in Blender's Python
    interp = found["interpreter"]
    assert interp["source"] == "trainer environment" and interp["python"] == sys.executable
    assert interp["pythonpath"] == [str(env_root / "packages")]
    assert Path(found["trainer_root"]) == ext_dir / "bundled"
    # and the user's path ends with a volume in the scene
    assert found["capture"] == ["FINISHED"]
    assert found["train"] == ["FINISHED"], found["train_error"]
    assert Path(found["grid"]).is_file() and work in Path(found["grid"]).parents
    assert found["volumes"], "no Volume object imported"
