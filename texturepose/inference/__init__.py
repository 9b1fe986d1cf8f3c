"""Inference: a trained checkpoint applied to HDF5 evaluation sets, photos, folders and videos
(``texturepose predict``), with mesh and JSON export.

May import :mod:`texturepose.training` (checkpoints) and the layers below.
"""
