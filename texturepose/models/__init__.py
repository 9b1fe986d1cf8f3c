"""Networks: backbones (ResNet, EfficientNet-Lite0), the keypoint heatmap head, the IEF regressor
and its mean parameters, the pose discriminator.

May import :mod:`texturepose.mocap` (mean parameters from the poses file), ``geometry`` and
``keypoints``.
"""
