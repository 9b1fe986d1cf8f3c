"""Evaluation: metrics (MPJPE, PA-MPJPE, PCK), protocols, the evaluate run, its outputs, the
MLflow logging and the HTML report.

The top library layer: may import everything below it, including :mod:`texturepose.inference`.
"""
