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


def test_fast_tanh_equals_torch_tanh_with_gradients():
    from reavise.models.layers import Tanh

    x = torch.linspace(-12, 12, 2001, dtype=torch.float64, requires_grad=True)
    y = Tanh()(x)
    assert torch.allclose(y, torch.tanh(x), atol=1e-15, rtol=1e-12)
    y.sum().backward()
    assert torch.allclose(x.grad, 1 - torch.tanh(x.detach()) ** 2, atol=1e-12)
    with torch.no_grad():
        x32 = x.detach().float()
        assert (Tanh()(x32) - torch.tanh(x32)).abs().max() < 3e-7


def test_folded_log2_variance_equals_the_decoder():
    """fastpath.log2_variance folds the A-VAE's tanh affine part and log2 e into the weights:
    same map."""
    import math

    from reavise.inference import fastpath
    from reavise.models import build_prior

    torch.manual_seed(0)
    for hidden in ([32], [24, 40]):
        m = build_prior("a-vae", {"x_dim": 17, "z_dim": 3, "hidden": hidden}).double().eval()
        z = torch.randn(2, 5, 3, dtype=torch.float64)
        off = torch.randn(2, 5, 17, dtype=torch.float64)
        want = off + m.decode(z) / math.log(2.0)
        with torch.no_grad():
            got = fastpath.log2_variance(m, None, off)(z)
        assert torch.allclose(got, want, atol=1e-12)
        # with gradients enabled the plain decoder is used (folding would detach the weights)
        assert torch.allclose(fastpath.log2_variance(m, None, off)(z), want, atol=1e-12)


@pytest.mark.parametrize(
    "name,values,key",
    [("a-vae", {"z_dim": 0}, "z_dim"), ("a-vae", {"hidden": ()}, "hidden"),
     ("a-vae", {"hidden": (128, 0)}, "hidden"), ("av-vae", {"fusion_heads": 0}, "fusion_heads"),
     ("switching", {"switch_stay": 1.5}, "switch_stay")],
)  # fmt: skip
def test_make_config_refuses_out_of_range_sizes(name, values, key):
    from reavise.errors import SettingError
    from reavise.models.registry import make_config

    with pytest.raises(SettingError, match=key):
        make_config(name, values)
    make_config(name, {})  # the defaults pass
