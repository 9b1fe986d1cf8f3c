"""Rendering: the differentiable z-buffer rasteriser, UV texture atlases and sampling, overlays.

May import :mod:`texturepose.geometry`, :mod:`texturepose.keypoints` and
:mod:`texturepose.files`; knows no body model (meshes come in as tensors).
"""
