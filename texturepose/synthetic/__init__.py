"""The embedded default dataset: Anny rendered from mocap poses by four calibrated cameras.

Modules: :mod:`subjects` (who: phenotype, skin tone, clothing, light), :mod:`textures` (UV
textures painted from the part segmentation), :mod:`rig` (Human3.6M-like cameras),
:mod:`backgrounds` (procedural backgrounds), :mod:`render` (crops with anti-aliasing, shading,
masks and keypoint visibility), :mod:`generate` (the whole dataset, written in the HDF5 schema).

May import :mod:`texturepose.mocap` (poses), :mod:`texturepose.data` (HDF5 writer),
:mod:`texturepose.body`, :mod:`texturepose.render` and the layers below.
"""

from texturepose.synthetic.generate import PoseClips, SynthConfig, config_from_params, synthesize

__all__ = ["PoseClips", "SynthConfig", "config_from_params", "synthesize"]
