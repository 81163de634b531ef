import numpy as np
import pytest
import torch

from reavise.errors import CheckpointError
from reavise.models import build_prior
from reavise.models.checkpoint import (
    import_published,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)


def test_save_load_round_trip_identical_outputs(tmp_path):
    torch.manual_seed(1)
    m = build_prior("a-vae", {"z_dim": 8, "hidden": [64, 32], "input_transform": "log"})
    p = save_checkpoint(tmp_path / "m.pt", m, extra={"note": "x"})
    m2 = load_checkpoint(p)
    P = torch.rand(2, 6, 513)
    z = torch.randn(2, 6, 8)
    assert torch.equal(m.encode(P)[0], m2.encode(P)[0])
    assert torch.equal(m.decode(z), m2.decode(z))
    payload = read_checkpoint(p)
    assert payload["model"] == "a-vae" and payload["config"]["hidden"] == [64, 32]
    assert payload["versions"]["reavise"] and payload["extra"]["note"] == "x"


def test_bad_checkpoints_clear_errors(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(CheckpointError, match="not a reavise checkpoint"):
        load_checkpoint(other)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="not a published A-VAE"):
        import_published(other, tmp_path / "x.pt")


def _published_forward(sd, P):
    """The published A-VAE forward pass written out by hand (tanh MLPs)."""
    h = torch.tanh(P @ sd["mlp_x_z.linear0.weight"].T + sd["mlp_x_z.linear0.bias"])
    mu = h @ sd["inf_mean.weight"].T + sd["inf_mean.bias"]
    g = torch.tanh(mu @ sd["mlp_z_x.linear0.weight"].T + sd["mlp_z_x.linear0.bias"])
    return mu, g @ sd["gen_logvar.weight"].T + sd["gen_logvar.bias"]


def test_import_synthetic_published_layout(tmp_path):
    torch.manual_seed(0)
    sd = {
        "mlp_x_z.linear0.weight": torch.randn(32, 513) * 0.05,
        "mlp_x_z.linear0.bias": torch.randn(32),
        "inf_mean.weight": torch.randn(4, 32),
        "inf_mean.bias": torch.randn(4),
        "inf_logvar.weight": torch.randn(4, 32),
        "inf_logvar.bias": torch.randn(4),
        "mlp_z_x.linear0.weight": torch.randn(32, 4),
        "mlp_z_x.linear0.bias": torch.randn(32),
        "gen_logvar.weight": torch.randn(513, 32),
        "gen_logvar.bias": torch.randn(513),
    }
    src = tmp_path / "pub.pt"
    torch.save(sd, src)
    m = load_checkpoint(import_published(src, tmp_path / "m.pt"))
    P = torch.rand(3, 513)
    mu_ref, logv_ref = _published_forward(sd, P)
    mu, _ = m.encode(P)
    assert torch.allclose(mu, mu_ref, atol=1e-5)
    assert torch.allclose(m.decode(mu), logv_ref, atol=1e-4)


def test_import_real_published_a_vae(shared_data, tmp_path):
    src = shared_data / "reference-checkpoints" / "a-vae" / "A-VAE.pt"
    m = load_checkpoint(import_published(src, tmp_path / "a.pt"))
    assert m.config.z_dim == 16 and tuple(m.config.hidden) == (128,)
    sd = torch.load(src, map_location="cpu", weights_only=True)
    P = torch.rand(5, 513)
    mu_ref, logv_ref = _published_forward(sd, P)
    assert np.allclose(m.encode(P)[0].detach(), mu_ref, atol=1e-5)
    assert np.allclose(m.decode(mu_ref).detach(), logv_ref, atol=1e-4)
    with pytest.raises(CheckpointError, match="import-checkpoint"):
        load_checkpoint(src)
    # the recurrent RVAE is recognised as its own layout (tests/test_sequential.py)
    rvae = load_checkpoint(import_published(shared_data / "reference-checkpoints" / "rvae" / "RVAE.pt", tmp_path / "r.pt"))
    assert rvae.registry_name == "rvae"


def test_checkpoint_with_another_stft_is_refused_on_load(tmp_path):
    """The stored ``stft`` settings are checked on load: one line naming the file and the mismatch."""
    m = build_prior("a-vae", {"x_dim": 513, "z_dim": 4, "hidden": [8]})
    p = save_checkpoint(tmp_path / "m.pt", m)
    assert read_checkpoint(p)["stft"]["n_fft"] == 1024
    load_checkpoint(p)  # the STFT it was written with loads
    payload = torch.load(p, weights_only=True)
    payload["stft"] = {**payload["stft"], "hop": 128}
    bad = tmp_path / "hop128.pt"
    torch.save(payload, bad)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(bad)
    msg = str(err.value)
    assert str(bad) in msg and "hop 128" in msg and "\n" not in msg
    payload["stft"] = "1024/256"
    torch.save(payload, bad)
    with pytest.raises(CheckpointError, match="malformed 'stft'"):
        read_checkpoint(bad)
    del payload["stft"]  # files written before the field: taken as reavise's STFT
    torch.save(payload, bad)
    assert read_checkpoint(bad)["model"] == "a-vae"
