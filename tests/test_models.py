import pytest
import torch

from reavise.errors import ReaviseError
from reavise.models import build_prior, prior_names
from reavise.models.registry import make_config


def test_registry_builds_a_vae_with_published_sizes():
    m = build_prior("a-vae")
    assert "a-vae" in prior_names()
    n = sum(p.numel() for p in m.parameters())
    # 513*128+128 + 2*(128*16+16) + 16*128+128 + 128*513+513
    assert n == 513 * 128 + 128 + 2 * (128 * 16 + 16) + 16 * 128 + 128 + 128 * 513 + 513


def test_unknown_model_and_keys_are_clear_errors():
    with pytest.raises(ReaviseError, match="unknown model 'nope'"):
        build_prior("nope")
    with pytest.raises(ReaviseError, match="unknown config keys"):
        make_config("a-vae", {"zdim": 3})


def test_decoder_broadcasts_over_sample_dims():
    torch.manual_seed(0)
    m = build_prior("a-vae", {"z_dim": 4, "hidden": [32]})
    z = torch.randn(5, 2, 7, 4)
    out = m.decode(z)
    assert out.shape == (5, 2, 7, 513)
    assert torch.allclose(out[3, 1], m.decode(z[3, 1]), atol=1e-5)


def test_loss_is_is_divergence_at_optimum_zero():
    # IS reconstruction term is zero when the decoder's variance equals the power exactly
    m = build_prior("a-vae", {"z_dim": 2, "hidden": [8]})
    P = torch.rand(1, 3, 513) + 0.1
    with torch.no_grad():
        m.dec_logvar.weight.zero_()
        m.dec_logvar.bias.copy_(torch.log(P[0, 0]))
    out = m.loss(P[:, :1])
    assert out["recon"].abs() < 1e-4


def test_loss_gradients_flow_to_all_parameters():
    torch.manual_seed(0)
    m = build_prior("a-vae", {"z_dim": 4, "hidden": [16]})
    P = torch.rand(4, 5, 513)
    m.loss(P)["loss"].backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
