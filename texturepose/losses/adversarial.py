"""HMR's least-squares GAN losses (Mao et al. 2017) for the pose-and-shape prior.

The discriminator learns real (mocap) -> 1 and fake (predicted) -> 0; the regressor wants its
predictions -> 1. Every loss is the mean over samples and over the ``Jd + 2`` discriminator
outputs (HMR sums over outputs: multiply the weight by ``Jd + 2`` to match its scale). Predictions
of every IEF iteration are fake samples, as in HMR.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from texturepose.models.discriminator import Discriminator


def _stack(rotmats: torch.Tensor | Sequence[torch.Tensor], shape):
    if isinstance(rotmats, torch.Tensor):
        return rotmats, shape
    if len(rotmats) == 0 or len(rotmats) != len(shape):
        raise ValueError(f"need one shape per rotation batch, got {len(rotmats)} and {len(shape)}")
    return torch.cat(list(rotmats), dim=0), torch.cat(list(shape), dim=0)


def generator_loss(
    disc: Discriminator,
    rotmats: torch.Tensor | Sequence[torch.Tensor],
    shape: torch.Tensor | Sequence[torch.Tensor],
) -> torch.Tensor:
    """Regressor's adversarial loss ``mean((D(fake) - 1)^2)``; accepts the per-iteration lists.

    Gradients reach the regressor; the discriminator's own parameters also receive gradients, so
    step only the regressor's optimiser with this loss (or freeze ``disc``)."""
    r, s = _stack(rotmats, shape)
    return (disc(r, s) - 1.0).pow(2).mean()


def discriminator_loss(
    disc: Discriminator,
    real_rotmats: torch.Tensor,
    real_shape: torch.Tensor,
    fake_rotmats: torch.Tensor | Sequence[torch.Tensor],
    fake_shape: torch.Tensor | Sequence[torch.Tensor],
) -> tuple[torch.Tensor, dict[str, float]]:
    """Discriminator's loss ``mean((D(real) - 1)^2) + mean(D(fake)^2)``; fakes are detached.

    Returns the loss and ``{"d_real": ..., "d_fake": ...}`` (the two terms, for logging)."""
    fr, fs = _stack(fake_rotmats, fake_shape)
    real = (disc(real_rotmats, real_shape) - 1.0).pow(2).mean()
    fake = disc(fr.detach(), fs.detach()).pow(2).mean()
    return real + fake, {"d_real": float(real.detach()), "d_fake": float(fake.detach())}
