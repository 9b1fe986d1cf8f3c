"""HMR's discriminator and the least-squares GAN losses."""

from __future__ import annotations

import pytest
import roma
import torch

from texturepose.geometry.rotations import axis_angle_to_matrix
from texturepose.losses.adversarial import discriminator_loss, generator_loss
from texturepose.models.discriminator import Discriminator

J, S = 6, 4


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_output_layout_and_structure():
    torch.manual_seed(0)
    disc = Discriminator(J, S)
    r, s = roma.random_rotmat((3, J)), torch.rand(3, S)
    out = disc(r, s)
    assert out.shape == (3, (J - 1) + 2) and disc.num_outputs == J + 1
    assert Discriminator(J, S, skip_global=False)(r, s).shape == (3, J + 2)
    # The global orientation is not seen.
    r2 = r.clone()
    r2[:, 0] = roma.random_rotmat(3)
    assert torch.equal(disc(r2, s), out)
    # Changing joint 3 changes only its own head (column 2: joint 0 is skipped) and the
    # full-pose logit; changing the shape changes only the last column.
    r3 = r.clone()
    r3[:, 3] = roma.random_rotmat(3)
    changed = (disc(r3, s) != out).any(dim=0)
    assert changed.tolist() == [False, False, True, False, False, True, False]
    changed = (disc(r, s + 1.0) != out).any(dim=0)
    assert changed.tolist() == [False] * (J - 1 + 1) + [True]
    with pytest.raises(ValueError, match=r"rotmats must be \(B, 6, 3, 3\)"):
        disc(r[:, 1:], s)
    with pytest.raises(ValueError, match=r"shape must be \(B, 4\)"):
        disc(r, s[:, :2])


def test_lsgan_losses_closed_form():
    """A constant 'discriminator' gives the LSGAN values in closed form; fakes are detached."""
    fake_r = torch.zeros(2, J, 3, 3, requires_grad=True)
    fake_s = torch.zeros(2, S)

    def const(value: float):
        return lambda r, s: r.flatten(1)[:, :1] * 0 + torch.full((r.shape[0], J + 1), value)

    assert torch.isclose(
        generator_loss(const(0.25), [fake_r, fake_r], [fake_s, fake_s]), torch.tensor(0.5625)
    )  # (0.25 - 1)^2
    real_r, real_s = torch.zeros(3, J, 3, 3), torch.zeros(3, S)
    loss, parts = discriminator_loss(const(0.25), real_r, real_s, [fake_r], [fake_s])
    assert torch.isclose(loss, torch.tensor(0.5625 + 0.0625))
    assert parts == pytest.approx({"d_real": 0.5625, "d_fake": 0.0625})
    assert not loss.requires_grad  # the fake predictions were detached
    with pytest.raises(ValueError, match="one shape per rotation batch"):
        generator_loss(const(0.0), [fake_r], [])


def test_a_few_steps_separate_real_from_fake():
    """Real: small joint rotations and small shapes (a 'mocap' prior); fake: uniformly random
    rotations and larger shapes."""
    torch.manual_seed(0)
    disc = Discriminator(J, S, shape_mean=torch.full((S,), 0.5))
    opt = torch.optim.Adam(disc.parameters(), lr=1e-3)

    def real(n: int):
        return axis_angle_to_matrix(torch.randn(n, J, 3) * 0.2), torch.rand(n, S) * 0.2

    def fake(n: int):
        return roma.random_rotmat((n, J)), 0.5 + torch.rand(n, S) * 0.5

    for _ in range(100):
        (rr, rs), (fr, fs) = real(32), fake(32)
        loss, _ = discriminator_loss(disc, rr, rs, [fr[:16], fr[16:]], [fs[:16], fs[16:]])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        d_real, d_fake = disc(*real(200)).mean(0), disc(*fake(200)).mean(0)
    # Every pose output (per joint, full pose) tells the two apart; the tiny shape branch
    # (4 -> 10 -> 5 -> 1) learns more slowly but already ranks them clearly.
    assert (d_real[:-1] - d_fake[:-1] > 0.5).all(), (d_real, d_fake)
    assert d_real[-1] > d_fake[-1] + 0.2, (d_real, d_fake)
    # The generator loss then rewards looking real.
    assert generator_loss(disc, *real(64)) < generator_loss(disc, *fake(64))
