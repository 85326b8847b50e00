"""Config = preset + JSON file + --set, typed by the TrainConfig fields; config.json round trip."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from trainer.config import PRESETS, TrainConfig
from trainer.io.config_io import (
    ConfigError,
    apply_sets,
    build_config,
    coerce,
    config_from_file,
    parse_text,
    save_config,
)


def test_sets_are_typed_by_field() -> None:
    cfg = build_config("tiny", sets=[
        "steps=1e3", "resolutions=8,16,32", "upsample_at=[10, 20]", "background=(0,0.5,1)",
        "scene_box=[[-2,-2,-2],[2,2,2]]", "lr_sigma=3", "device=cpu",
        "prune_at=",
    ])
    assert cfg.steps == 1000 and isinstance(cfg.steps, int)
    assert cfg.resolutions == [8, 16, 32] and cfg.upsample_at == [10, 20]
    assert cfg.background == (0.0, 0.5, 1.0)
    assert cfg.scene_box == [[-2.0] * 3, [2.0] * 3]
    assert cfg.lr_sigma == 3.0 and isinstance(cfg.lr_sigma, float)
    assert cfg.device == "cpu" and cfg.prune_at == []
    assert PRESETS["tiny"].steps != 1000      # the preset itself is untouched


@pytest.mark.parametrize("item, message", [
    ("stepz=3", "unknown config key 'stepz' (did you mean steps?)"),
    ("steps=abc", "--set steps: expected int"),
    ("steps=1.5", "--set steps: expected int"),
    ("background=1,2", "--set background: expected 3 values"),
    ("resolutions=a,b", "resolutions[0]: expected int"),
    ("steps", "expected key=value"),
    ("lr_sigma=NaN", "--set lr_sigma: expected a finite number"),
])
def test_bad_sets_name_the_key(item: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        apply_sets(PRESETS["tiny"], [item])
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("text, value", [("true", True), ("No", False), ("on", True), ("0", False)])
def test_boolean_spellings(text: str, value: bool) -> None:
    assert coerce(bool, parse_text(bool, text), "x") is value


def test_non_boolean_is_refused() -> None:
    with pytest.raises(ConfigError, match="x: expected bool"):
        coerce(bool, parse_text(bool, "maybe"), "x")
    with pytest.raises(ConfigError, match="x: expected bool"):
        coerce(bool, 1, "x")


def test_checks_run_after_overrides() -> None:
    with pytest.raises(ConfigError, match="upsample_at"):
        build_config("tiny", sets=["resolutions=8,16,32"])
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        build_config("huge")


def test_precedence_preset_then_file_then_sets(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"steps": 77, "sh_degree": 0, "background": [0, 0, 0]}))
    cfg = build_config("fast", config_file=path, sets=["sh_degree=3"])
    assert cfg.steps == 77 and cfg.sh_degree == 3 and cfg.background == (0.0, 0.0, 0.0)
    assert cfg.resolutions == PRESETS["fast"].resolutions
    path.write_text(json.dumps({"stepz": 1}))
    with pytest.raises(ConfigError, match=rf"{path}: unknown config key 'stepz'"):
        build_config("fast", config_file=path)
    path.write_text(json.dumps({"steps": "many"}))
    with pytest.raises(ConfigError, match=rf"{path}: steps: expected int"):
        build_config("fast", config_file=path)
    path.write_text("{oops")
    with pytest.raises(ConfigError, match=rf"{path}: malformed JSON"):
        build_config("fast", config_file=path)


def test_saved_config_reloads_equal(tmp_path: Path) -> None:
    cfg = build_config("default", sets=["background=0.1,0.2,0.3", "seed=5"])
    save_config(tmp_path / "config.json", cfg)
    assert config_from_file(tmp_path / "config.json") == cfg
    data = json.loads((tmp_path / "config.json").read_text())
    assert set(data) == {f.name for f in dataclasses.fields(TrainConfig)}
    del data["steps"]
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="missing config key 'steps'"):
        config_from_file(tmp_path / "config.json")
    assert not list(tmp_path.glob(".*tmp"))


def test_a_run_config_from_before_a_key_was_retired_still_loads(tmp_path: Path) -> None:
    # session 6's config.json files hold occupancy_block (the march's coarse mask, gone since)
    old = tmp_path / "config.json"
    save_config(old, PRESETS["fast"])
    values = json.loads(old.read_text())
    values["occupancy_block"] = 2
    old.write_text(json.dumps(values))
    assert config_from_file(old) == PRESETS["fast"]
    assert build_config("tiny", config_file=old) == PRESETS["fast"]
    with pytest.raises(ConfigError, match="occupancy_block"):  # but it is not a setting any more
        apply_sets(PRESETS["fast"], ["occupancy_block=2"])
