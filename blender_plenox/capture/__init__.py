"""The bpy-facing side of capture: scene state, camera sources and the render loop. The maths lives in
`utils/` (camera_math, rig) and the file format in `io/dataset_writer`."""
