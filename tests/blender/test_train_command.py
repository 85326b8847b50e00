"""The Train panel's settings become the trainer's command line (contract 2), in real Blender."""

from __future__ import annotations

import volume_render_helpers  # noqa: F401  # isort: skip  # puts the repository on sys.path

import bpy


def _sets(cmd: list[str]) -> dict[str, str]:
    pairs = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--set"]
    return dict(p.split("=", 1) for p in pairs)


def test_colour_is_view_dependent_unless_asked_otherwise(registered_scene, tmp_path):
    from blender_plenox.operators.train import build_command

    t = registered_scene.plenox.train
    t.data_dir, t.output_dir = str(tmp_path / "data"), str(tmp_path / "run")
    cmd, _ = build_command(bpy.context, "python")
    assert cmd[:4] == ["python", "-m", "trainer", "train"]
    assert t.view_dependent and "sh_degree" not in _sets(cmd)  # the preset's: the volume shows SH colour
    t.view_dependent = False
    assert _sets(build_command(bpy.context, "python")[0])["sh_degree"] == "0"  # the lighter option
    t.extra_overrides = "sh_degree=1 batch_rays=2048"  # the user's own word wins
    sets = _sets(build_command(bpy.context, "python")[0])
    assert sets["sh_degree"] == "1" and sets["batch_rays"] == "2048"
