"""bpy-free helpers of the add-on, importable (and tested) outside Blender."""
