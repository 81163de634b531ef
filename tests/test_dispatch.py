"""MCEM's int8/float32 decoder choice (reavise.native.decoder_path): CPU flags, measured
timings (injected here: no timed tests), the disk cache, and the config's overrides."""

import json

import pytest
import torch

from reavise import native
from reavise.errors import ReaviseError
from reavise.inference import build_algorithm
from reavise.inference.mcem import MCEM, MCEMState, int8_mode

needs_native = pytest.mark.skipif(
    native.load() is None, reason=f"native kernels unavailable: {native.unavailable_reason()}"
)


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """An empty per-process memo and disk cache, a VNNI x86 CPU unless a test says otherwise,
    and timings injected by setting ``timings["t"] = (float32 s, int8 s)``."""
    monkeypatch.setenv("REAVISE_CACHE", str(tmp_path))
    monkeypatch.setattr(native, "_paths", {})
    monkeypatch.setattr(native.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(native, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_vnni"})
    timings = {"t": (1e-3, 4e-4), "calls": 0}

    def measure(hidden, bins):
        timings["calls"] += 1
        return timings["t"]

    monkeypatch.setattr(native, "measure_decoder_products", measure)
    return timings


@needs_native
def test_int8_is_chosen_only_when_it_measures_faster_by_the_margin(fresh):
    fresh["t"] = (1e-3, 4e-4)  # int8 2.5x faster
    p = native.decoder_path(128, 513)
    assert (p.chosen, p.reason) == ("int8", "measured")
    flop = 2 * native.MEASURE_ROWS * 128 * 513
    assert p.float32_gflops == pytest.approx(flop / 1e-3 / 1e9, rel=1e-3)
    assert p.int8_gflops == pytest.approx(flop / 4e-4 / 1e9, rel=1e-3)
    fresh["t"] = (1e-3, 3.5e-2)  # a CPU whose _int_mm is a slow loop: 35x slower
    assert native.decoder_path(128, 513, refresh=True).chosen == "float32"
    fresh["t"] = (1e-3, 0.95e-3)  # faster, but within the margin: not worth the rounding
    assert native.decoder_path(128, 513, refresh=True).chosen == "float32"
    assert "float32 (measured: int8" in native.decoder_path(128, 513).summary()


@needs_native
def test_x86_without_vnni_is_float32_without_measuring(fresh, monkeypatch):
    monkeypatch.setattr(native, "cpu_flags", lambda: {"avx2", "fma", "avx512f"})
    fresh["t"] = (1e-3, 1e-4)  # would win if it were measured
    p = native.decoder_path(128, 513)
    assert p.chosen == "float32" and "no avx512_vnni" in p.reason and fresh["calls"] == 0
    assert p.float32_gflops is None
    for flag in native.INT8_CPU_FLAGS:  # any one of them: measure
        monkeypatch.setattr(native, "_paths", {})
        monkeypatch.setattr(native, "cpu_flags", lambda flag=flag: {"avx2", flag})
        assert native.decoder_path(128, 513, refresh=True).chosen == "int8"
    # other architectures (ARM dot-product extensions) are measured
    monkeypatch.setattr(native.platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(native, "cpu_flags", lambda: {"asimd"})
    assert native.int8_ruled_out_by_cpu() is None


@needs_native
def test_the_decision_is_cached_on_disk_and_read_back(fresh, monkeypatch, tmp_path):
    fresh["t"] = (1e-3, 4e-4)
    first = native.decoder_path(128, 513)
    files = list((tmp_path / "native").glob("decoder-path-*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["chosen"] == "int8"
    # a new process: nothing in memory; the file answers, no measurement
    monkeypatch.setattr(native, "_paths", {})
    fresh["t"] = (1e-3, 1.0)
    again = native.decoder_path(128, 513)
    assert again.reason == "cached" and again.chosen == "int8" and fresh["calls"] == 1
    assert again.int8_gflops == first.int8_gflops
    # other shapes have their own entry; a corrupt file is measured again and rewritten
    assert native.decoder_path(64, 257).chosen == "float32" and fresh["calls"] == 2
    files[0].write_text("{not json")
    monkeypatch.setattr(native, "_paths", {})
    assert native.decoder_path(128, 513).chosen == "float32" and fresh["calls"] == 3
    assert json.loads(files[0].read_text())["chosen"] == "float32"
    assert not list((tmp_path / "native").glob("*.tmp"))


@needs_native
def test_forcing_true_or_false_overrides_the_measurement(fresh):
    from test_native import _tiny_avae

    prior, z = _tiny_avae(), torch.zeros(1, 10, 4)
    fresh["t"] = (1e-3, 1e-1)  # measured: int8 far slower
    assert MCEM._int8_decoder(prior, None, z, MCEMState(z=z), "auto") is None
    assert MCEM._int8_decoder(prior, None, z, MCEMState(z=z), True) is not None
    fresh["t"] = (1e-3, 1e-4)
    assert native.decoder_path(32, 65, refresh=True).chosen == "int8"  # measured again
    assert MCEM._int8_decoder(prior, None, z, MCEMState(z=z), "auto") is not None
    assert MCEM._int8_decoder(prior, None, z, MCEMState(z=z), False) is None


def test_int8_decoder_setting_accepts_auto_true_false_only():
    assert build_algorithm("mcem").config.int8_decoder == "auto"
    for given, want in (("auto", "auto"), ("AUTO", "auto"), (True, True), (False, False),
                        ("false", False), ("true", True)):  # fmt: skip
        assert int8_mode(given) == want
        assert build_algorithm("mcem", int8_decoder=given).config.int8_decoder is want
    for bad in ("fast", 1, 0, None, [True]):
        with pytest.raises(ReaviseError, match="int8_decoder must be auto, true or false"):
            build_algorithm("mcem", int8_decoder=bad)


@needs_native
@pytest.mark.parametrize("int8_fast", [True, False])
def test_auto_runs_exactly_the_path_the_decision_names(fresh, int8_fast):
    """An emulated slow-int8 machine (injected timings): auto gives int8_decoder=false's
    numbers; a fast one: int8_decoder=true's."""
    from reavise.inference.mcem import MCEMConfig
    from reavise.inference.nmf import init_nmf
    from test_native import _tiny_avae

    fresh["t"] = (1e-3, 2e-4) if int8_fast else (1e-3, 3e-2)
    prior = _tiny_avae()
    g = torch.Generator().manual_seed(1)
    P = torch.rand(1, 30, 65, generator=g) ** 2
    nmf, z0 = init_nmf(P, 4, g), torch.randn(1, 30, 4, generator=g)
    out = {}
    for mode in ("auto", True, False):
        cfg = MCEMConfig(n_mh=8, burn_in=4, proposal_var=0.05, int8_decoder=mode)
        zs, Vs = MCEM(cfg).e_step(prior, P, None, nmf, MCEMState(z=z0.clone()), torch.Generator().manual_seed(7))
        out[mode] = Vs
    assert torch.equal(out["auto"], out[int8_fast])
    assert not torch.equal(out[True], out[False])  # the two paths do differ
