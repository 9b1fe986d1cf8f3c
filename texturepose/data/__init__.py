"""Training data: the HDF5 schema (writer/reader), the training dataset with augmentation, the
sampler of pairs and batches, and the pairs table.

May import :mod:`texturepose.geometry`, :mod:`texturepose.keypoints` and
:mod:`texturepose.files`.
"""
