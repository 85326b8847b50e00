# The Blender versions the tests run on, as `bpy` wheels from PyPI (sourced by setup.sh and test.sh).
# The newest runs the whole real-Blender layer in .venv-blender; each LTS release that the manifest's
# blender_version_min claims gets .venv-blender-<major.minor> and the capture, train, import and render
# tests (BLENDER_LTS_TESTS). BLENDER_LTS="" skips them (a quicker local run); the newest patch
# releases were picked with `pip index versions bpy`.
BLENDER_NEWEST=5.0.1
BLENDER_LTS=${BLENDER_LTS-"4.2.23 4.5.15"}
# Left out on the LTS releases: the extension-install path (about 100 s; Blender's installer is the
# same code on every version) and the benchmark smoke runs (bench_vdb_write compares against an
# openvdb binding the 4.2 wheel lacks).
BLENDER_LTS_TESTS=(tests/blender --ignore=tests/blender/test_installed_extension.py
                   --ignore=tests/blender/test_benchmarks_smoke.py)
