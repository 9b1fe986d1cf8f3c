"""Motion capture: BVH parsing, skeleton maps to the keypoint superset, fitting a body model to
clips, the poses HDF5 file, and the per-clip pipeline of the ``mocap`` stage.

May import :mod:`texturepose.datasets` (AMASS/MoSh npz), :mod:`texturepose.data` (HDF5
helpers), :mod:`texturepose.body` (through the ``BodyModel`` interface only) and the layers
below them.
"""
