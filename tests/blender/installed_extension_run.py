"""A Blender user's whole path, run by tests/blender/test_installed_extension.py in a fresh Python
with no checkout on sys.path and a temporary Blender user folder:

    python installed_extension_run.py ZIP WHEELHOUSE WORKDIR

install the zip with Blender's extension installer → enable → Install Trainer Environment (pip from
WHEELHOUSE, through the preferences' pip Arguments) → capture a small scene → train → import. Prints
one JSON line of findings for the test to check.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import bpy

zip_path, wheelhouse, work = sys.argv[1], sys.argv[2], Path(sys.argv[3])
MODULE = "bl_ext.user_default.blender_plenox"
found: dict[str, object] = {"sys_path_has_checkout": any((Path(p) / "trainer" / "cli.py").is_file() for p in sys.path)}

bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
found["enabled"] = MODULE in bpy.context.preferences.addons
addon = sys.modules[MODULE]
found["addon_file"] = addon.__file__
found["extension_user_dir"] = bpy.utils.extension_path_user(MODULE)

prefs = bpy.context.preferences.addons[MODULE].preferences
prefs.pip_args = f'--no-index --find-links "{wheelhouse}"'
found["install"] = sorted(bpy.ops.plenox.install_trainer_env())
env_ops = sys.modules[MODULE + ".operators.trainer_env"]
env = env_ops.installed()
found["env_root"] = str(env.root) if env else None
found["env_summary"] = env.summary() if env else None

train_ops = sys.modules[MODULE + ".operators.train"]
check = train_ops.find_python(bpy.context)
found["interpreter"] = {"python": check.python, "source": check.source, "pythonpath": list(check.pythonpath)}
found["trainer_root"] = train_ops.tp.trainer_root()

scene = bpy.context.scene  # Blender's startup scene: the default cube, its light and camera
found["scene_objects"] = sorted(o.name for o in scene.objects)
cap = scene.plenox.capture
cap.output_dir = str(work / "dataset ü")  # the user's folders have spaces and accents
cap.rig_views, cap.resolution_x, cap.resolution_y, cap.samples = 16, 32, 32, 4
found["capture"] = sorted(bpy.ops.plenox.capture())
t = scene.plenox.train
t.data_dir, t.output_dir, t.preset, t.device = cap.output_dir, str(work / "run ü"), "tiny", "cpu"
t.extra_overrides = "steps=120 upsample_at=[60] prune_at=[30]"
t.import_when_done = True
try:
    found["train"] = sorted(bpy.ops.plenox.train())
except RuntimeError as err:
    found["train"] = str(err)
found["train_error"] = t.error
found["grid"] = t.last_grid
found["volumes"] = [o.name for o in scene.objects if o.type == "VOLUME"]
print("FOUND " + json.dumps(found), flush=True)
