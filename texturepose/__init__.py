"""texturepose: open implementation of TexturePose (ICCV 2019)."""

__version__ = "0.1.0"
