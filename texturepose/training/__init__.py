"""Training: validated configs, data and model factories, the step loop, checkpoints, the
distributed (DDP) setup and the fit driver.

May import every layer below it (losses, models, synthetic, mocap, datasets, data, body, render,
geometry, keypoints) and :mod:`texturepose.tracking`.
"""
