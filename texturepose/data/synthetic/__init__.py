"""The embedded default dataset: Anny rendered from mocap poses by four calibrated cameras.

Modules: :mod:`subjects` (who: phenotype, skin tone, clothing, light), :mod:`textures` (UV
textures painted from the part segmentation), :mod:`rig` (Human3.6M-like cameras),
:mod:`backgrounds` (procedural backgrounds), :mod:`render` (crops with anti-aliasing, shading,
masks and keypoint visibility), :mod:`generate` (the whole dataset, written in the HDF5 schema).
"""

from texturepose.data.synthetic.generate import PoseClips, SynthConfig, synthesize

__all__ = ["PoseClips", "SynthConfig", "synthesize"]
