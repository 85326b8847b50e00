"""Blender-side import: OpenVDB files (written with numpy, io/vdb_file.py) and the Volume object with its material."""
