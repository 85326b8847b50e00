"""Progress events (contract 3): JSON lines on stdout only, a bar on stderr."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from trainer.io.events import BarEventSink, JsonEventSink, NullEventSink


def test_json_lines_carry_event_time_and_plain_values() -> None:
    stream = io.StringIO()
    sink = JsonEventSink(stream)
    sink.emit("start", total=10, device="cpu", out=Path("/tmp/run"), resolution=(16, 16, 16), config="c.json")
    sink.emit("progress", step=np.int64(5), total=10, loss=torch.tensor(0.25), psnr=math.nan,
              resolution=[16, 16, 16], voxels=100, elapsed=1.5, eta=math.inf)
    sink.emit("done", grid="g.npz", metrics="m.json", psnr=np.float32(21.5), elapsed=2.0)
    lines = stream.getvalue().splitlines()
    events = [json.loads(line) for line in lines]   # strict JSON: NaN/inf would fail here... as null instead
    assert [e["event"] for e in events] == ["start", "progress", "done"]
    assert all(isinstance(e["time"], float) and e["time"] > 1.6e9 for e in events)
    assert events[0]["version"] == 1 and events[0]["out"] == "/tmp/run" and events[0]["resolution"] == [16, 16, 16]
    assert events[1]["step"] == 5 and events[1]["loss"] == 0.25
    assert events[1]["psnr"] is None and events[1]["eta"] is None
    assert events[2]["psnr"] == 21.5
    assert all("NaN" not in line and "Infinity" not in line for line in lines)


@pytest.mark.parametrize("sink", [JsonEventSink(io.StringIO()), NullEventSink(), BarEventSink(io.StringIO())])
def test_unknown_events_are_refused(sink) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="unknown event"):
        sink.emit("progres", step=1)


def test_bar_writes_to_its_stream_and_never_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    stream = io.StringIO()
    sink = BarEventSink(stream)
    sink.emit("start", total=4, device="cpu", out="run")
    for step in range(1, 5):
        sink.emit("progress", step=step, total=4, loss=0.1, psnr=20.0, resolution=[8, 8, 8], voxels=512)
    sink.emit("stage", name="upsample", step=2, resolution=[16, 16, 16], voxels_before=512, voxels_after=4096)
    sink.emit("done", grid="g.npz", metrics="m.json", psnr=22.25, elapsed=1.0)
    text = stream.getvalue()
    assert "4/4" in text and "[upsample]" in text and "voxels_after=4096" in text and "test PSNR 22.25 dB" in text
    assert capsys.readouterr().out == ""
