"""Blender-side import: OpenVDB files (bundled openvdb) and the Volume object with its material."""
