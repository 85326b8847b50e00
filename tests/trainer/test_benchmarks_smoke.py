"""benchmarks/bench_lego.py still runs against the trainer's current API: its --smoke mode, as a real
subprocess of this environment's Python (the one with torch), on the small sphere it generates.

Only that it runs and prints its figures is checked: timings belong to the benchmark, not to tests,
and the figures of a 40-step run on a 24x24 sphere mean nothing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

NUMBER = r"[0-9][0-9.,]*"


def test_bench_lego_smoke_runs_and_prints_its_figures(repo_root: Path, tmp_path: Path) -> None:
    # one thread: two threads beside other busy work can run 10-40x slower on a 2-core machine
    proc = subprocess.run(
        [sys.executable, str(repo_root / "benchmarks" / "bench_lego.py"), "--smoke", "--threads", "1"],
        cwd=tmp_path, check=False, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert re.search(rf"^training: 40 steps in {NUMBER}s wall$", out, re.MULTILINE), out
    assert len(re.findall(rf"^  stage \d+x\d+x\d+: \d+ steps, {NUMBER} rays/s, peak ", out, re.MULTILINE)) == 2, out
    for name in ("exported grid, pixel area 2x2", "exported grid, pixel centres", "training grid, pixel area 2x2"):
        assert re.search(rf"^test \({name}\): PSNR {NUMBER} dB, SSIM {NUMBER} over 2 views", out, re.MULTILINE), out


def test_bench_real_capture_smoke_runs_every_variant_and_prints_its_table(repo_root: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(repo_root / "benchmarks" / "bench_real_capture.py"), "--smoke", "--threads", "1"],
        cwd=tmp_path, check=False, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert re.search(r"; machine: \d+ cores, load average ", out), out
    assert re.search(r"^variant +box +steps +train s +wall s +PSNR dB +SSIM +note$", out, re.MULTILINE), out
    # the box variants: the trainer's box from the cameras without aabb_scale, instant-ngp's with it
    assert re.search(rf"^small-box +\S+ cameras +40 +{NUMBER} +{NUMBER} +{NUMBER} +{NUMBER}$", out, re.MULTILINE), out
    for variant in ("box", "distortion"):
        assert re.search(rf"^{variant} +\S+ aabb_scale +40 +{NUMBER} +{NUMBER} +{NUMBER} +{NUMBER}$", out,
                         re.MULTILINE), out
    # the learned background either trains or says that this trainer lacks it; the table has its row
    assert re.search(rf"^background +(\S+ aabb_scale +40 +{NUMBER} +{NUMBER} +{NUMBER} +{NUMBER}|"
                     r"- +- +- +[0-9.]+ +- +- +background_model not available in this trainer)$", out, re.MULTILINE), out


def test_check_cuda_runs_its_checks_with_the_cpu_in_place_of_the_gpu(repo_root: Path, tmp_path: Path) -> None:
    # CI has no GPU: "cpu" runs the script's own code (each check then compares the CPU with itself),
    # so that it still works against the trainer's API when a session is next lent a GPU
    proc = subprocess.run(
        [sys.executable, str(repo_root / "benchmarks" / "check_cuda.py"), "cpu"],
        cwd=tmp_path, check=False, capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = re.findall(r"^(ok  |FAIL) (.+?):", proc.stdout, re.MULTILINE)
    assert [c[1] for c in checks] == [
        "grid after 1 shared step(s)", "grid after 40 shared step(s)", "render of one grid",
        "host synchronisations in a CUDA step", "tiny run's test PSNR, CUDA against CPU"], proc.stdout
    assert proc.stdout.rstrip().endswith("all passed"), proc.stdout
