import json

from blender_plenox.utils.progress_events import TrainingState, format_duration, parse_event


def line(**kw):
    return json.dumps({"time": 1.0, **kw})


def test_parse_accepts_contract_events_and_ignores_everything_else():
    assert parse_event(line(event="progress", step=3)).kind == "progress"
    assert parse_event(line(event="done", grid="g.npz")).get("grid") == "g.npz"
    assert parse_event(b'{"event": "start", "total": 5}\n').kind == "start"
    for junk in ["", "hello", "{broken", "[1, 2]", line(event="unknown"), line(step=1), '"str"', "{}"]:
        assert parse_event(junk) is None


def test_state_follows_a_run():
    s = TrainingState()
    events = [
        line(event="start", version=1, total=100, device="cpu", out="o", resolution=[32, 32, 32]),
        line(
            event="progress",
            step=10,
            total=100,
            loss=0.1,
            psnr=15.5,
            resolution=[32, 32, 32],
            voxels=32768,
            elapsed=2.0,
            eta=18.0,
            extra_field="ignored",
        ),
        line(
            event="stage",
            name="upsample",
            step=50,
            resolution=[64, 64, 64],
            voxels_before=30000,
            voxels_after=120000,
        ),
        line(event="snapshot", step=50, path="/tmp/snap.npz"),
        line(
            event="progress",
            step=60,
            total=100,
            loss=0.05,
            psnr=21.25,
            resolution=[64, 64, 64],
            voxels=118000,
            elapsed=12.0,
            eta=8.0,
        ),
    ]
    for text in events:
        s.apply(parse_event(text))
    assert (s.step, s.total, s.psnr, s.voxels, s.resolution) == (60, 100, 21.25, 118000, (64, 64, 64))
    assert s.fraction == 0.6 and s.snapshot == "/tmp/snap.npz" and s.snapshot_step == 50
    assert s.summary() == "step 60/100 | PSNR 21.25 dB | res 64x64x64 | 118,000 voxels | ETA 00:08"
    s.apply(parse_event(line(event="done", grid="g.npz", metrics="m.json", psnr=28.5, elapsed=20.0)))
    assert s.finished and s.grid == "g.npz" and s.test_psnr == 28.5 and s.fraction == 1.0 and not s.error


def test_a_time_limited_run_shows_its_share_of_the_time_and_the_steps_it_did():
    # max_minutes ends the run long before its last step; the trainer's ETA counts down to the limit
    s = TrainingState()
    s.apply(parse_event(line(event="start", total=12000, device="cpu")))
    s.apply(parse_event(line(event="progress", step=1200, total=12000, elapsed=150.0, eta=450.0)))
    assert s.fraction == 0.25  # by steps it would say 0.1
    s.apply(parse_event(line(event="progress", step=9000, total=12000, elapsed=599.0, eta=1.0)))
    assert abs(s.fraction - 599.0 / 600.0) < 1e-9
    s.apply(parse_event(line(event="done", grid="g.npz", psnr=31.5, step=9100, elapsed=620.0)))
    assert s.finished and s.step == 9100 and s.fraction == 1.0
    assert s.summary() == "step 9100/12000"


def test_without_timings_the_share_is_by_steps():
    s = TrainingState()
    s.apply(parse_event(line(event="progress", step=30, total=120)))
    assert s.fraction == 0.25
    s.apply(parse_event(line(event="error", message="disk full")))
    assert s.fraction == 0.25  # a failed run did not finish its work


def test_error_event_finishes_with_message():
    s = TrainingState()
    s.apply(parse_event(line(event="error", message="error: data/x.json: missing frames")))
    assert s.finished and s.error == "error: data/x.json: missing frames"


def test_format_duration():
    assert format_duration(None) == "--:--"
    assert format_duration(59.6) == "01:00"
    assert format_duration(3725) == "1:02:05"
