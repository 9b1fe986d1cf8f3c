"""Geometry: rotations, cameras and projections, crops.

Owns every coordinate convention (camera frame, crop transforms, perspective and weak-perspective
projection). May import only :mod:`texturepose.keypoints` and third-party packages.
"""
