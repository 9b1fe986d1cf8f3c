"""Losses: 2D keypoints and heatmaps, supervised 3D, multi-view consistency, texture consistency,
adversarial.

May import :mod:`texturepose.models` (the discriminator) and the layers below.
"""
