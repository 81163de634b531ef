"""Native CPU kernels for MCEM and the NMF M-step, compiled on first use with the system C compiler.

The kernels (``mcem_kernels.c``) fuse what torch runs as several passes over [T, F]: the MH
frame energies, accept/reject and kept-sample bookkeeping, the whole NMF M-step, and the
fixed-point limbs of the decoder's int8 output-layer products (``Int8Decoder``). They are
optional: without a C compiler, with ``REAVISE_NATIVE=0``, or for tensors that are not
float32 on the CPU, callers use their torch code instead (same algorithm, same random draws).

The shared library is built once per source, flags and CPU into the cache directory
(``$REAVISE_CACHE``, else ``$XDG_CACHE_HOME/reavise``, else ``~/.cache/reavise``), written to a
temporary name and renamed, so concurrent first uses never load a half-written file.

Whether MCEM runs the decoder's output layer as int8 products is decided per machine
(``decoder_path``): x86 CPUs without VNNI/AMX never do (``torch._int_mm`` has no fast kernel
there: about 25x slower than float32); elsewhere a few milliseconds of timed products of the real
shapes decide, and the decision is cached beside the library, keyed by it, torch's version
and the shapes.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch  # noqa: F401  (loaded first: the kernels then share torch's libgomp.so.1)

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("mcem_kernels.c")
# -march=native: the library is built on the machine that runs it; no -ffast-math, so a NaN
# energy still rejects (the simd reductions are allowed to reorder by their pragmas alone)
CFLAGS = ["-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-fno-trapping-math", "-fPIC",
          "-shared"]  # fmt: skip
if platform.machine().lower() in ("x86_64", "amd64"):
    # gcc 12 tunes unknown AVX-512 CPUs for 256-bit vectors; the loops here gain from 512
    CFLAGS.append("-mprefer-vector-width=512")

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_lib_path: Path | None = None
_error: str | None = None
_tried = False

_f = ctypes.c_float
_i = ctypes.c_int
_p = ctypes.c_void_p
_SIGNATURES = {
    "reavise_energy": [_i, _i, _p, _p, _p, _p, _p],
    "reavise_mh_step": [_i, _i, _i, _p, _p, _p, _f, _p, _p, _p, _p, _p, _p, _p, _p, _p, _p],
    "reavise_nmf_step": [_i, _i, _i, _i, _i, _p, ctypes.c_long, _p, _p, _p, _p, _p],
    "reavise_hidden_q": [_i, _i, _i, _p, _p, _p, _p, _i, _p, _p, _p],
    "reavise_quantize_rows": [_i, _i, _p, _p, _p, _p],
    "reavise_dequant": [_i, _i, _i, _p, _p, _p, _p, _p, _p],
    "reavise_mh_step_q": [_i, _i, _i, _i, _p, _p, _p, _p, _p, _p, _p, _f, _p, _p, _p, _p, _p, _p,
                          _p, _p, _p, _p],
}


def enabled() -> bool:
    """False when the user turned the kernels off with REAVISE_NATIVE=0."""
    return os.environ.get("REAVISE_NATIVE", "1").strip().lower() not in ("0", "false", "no", "off")


def cache_dir() -> Path:
    if os.environ.get("REAVISE_CACHE"):
        return Path(os.environ["REAVISE_CACHE"]) / "native"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "reavise" / "native"


def _cpu_id() -> str:
    """What -march=native depends on: the CPU model and its feature flags."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        keep = [ln for ln in lines if ln.startswith(("model name", "flags"))][:2]
        return "\n".join(keep)
    except OSError:
        return platform.processor() or platform.machine()


def _cflags() -> list[str]:
    """CFLAGS plus $REAVISE_NATIVE_CFLAGS (e.g. -mno-avx512f to build the portable code)."""
    return CFLAGS + os.environ.get("REAVISE_NATIVE_CFLAGS", "").split()


def _build(cc: str) -> Path:
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, check=True).stdout
    flags = _cflags()
    key = hashlib.sha256(
        "\0".join([SOURCE.read_text(), " ".join(flags), version, _cpu_id()]).encode()
    ).hexdigest()[:16]
    out = cache_dir() / f"mcem_kernels-{key}.so"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".so.tmp")
    os.close(fd)
    try:
        res = subprocess.run([cc, *flags, str(SOURCE), "-o", tmp], capture_output=True, text=True)
        if res.returncode != 0:
            last = (res.stderr.strip().splitlines() or [f"exit code {res.returncode}"])[-1]
            raise RuntimeError(f"{cc} failed to build {SOURCE.name}: {last}")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def load() -> ctypes.CDLL | None:
    """The kernels' library, built on first use; None if disabled or it cannot be built."""
    global _lib, _lib_path, _error, _tried
    if not enabled():
        return None
    with _lock:
        if _tried:
            return _lib
        _tried = True
        cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
        try:
            if cc is None:
                raise RuntimeError("no C compiler (cc/gcc) on PATH")
            path = _build(cc)
            lib = ctypes.CDLL(str(path))
            for name, args in _SIGNATURES.items():
                fn = getattr(lib, name)
                fn.argtypes = args
                fn.restype = ctypes.c_int if name == "reavise_nmf_step" else None
            _lib, _lib_path = lib, path
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            _error = str(exc)
            log.info("native MCEM kernels unavailable (%s); using the torch code", _error)
        return _lib


def unavailable_reason() -> str | None:
    """Why ``load()`` returned None (after it was called), else None."""
    if not enabled():
        return "disabled by REAVISE_NATIVE=0"
    return _error


def usable(*tensors: torch.Tensor) -> bool:
    """True when the kernels can take these tensors: CPU float32, and the library loads."""
    if not all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors):
        return False
    return load() is not None


def _ptr(t: torch.Tensor | None) -> int | None:
    if t is None:
        return None
    if not (t.is_contiguous() and t.dtype == torch.float32 and t.device.type == "cpu"):
        raise ValueError("native kernels take contiguous float32 CPU tensors")
    return t.data_ptr()


def energy(u: torch.Tensor, Q: torch.Tensor, scale: torch.Tensor | None = None,
           vs_out: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """Per-frame sum_f ln(1 + 2^u) + Q / (1 + 2^u) for u, Q [..., T, F] -> [..., T].

    With ``scale`` and ``vs_out``, also writes vs_out = 2^u * scale (the speech variance)."""
    F = u.shape[-1]
    N = u.numel() // F
    e = u.new_empty(u.shape[:-1])
    load().reavise_energy(N, F, _ptr(u), _ptr(Q), _ptr(scale), _ptr(e), _ptr(vs_out))
    return e


QS = 127 * 128  # fixed-point steps of the int8-limb operands (mcem_kernels.c)
LOG2_E = 1.4426950408889634
_int8_ok: bool | None = None


def int8_gemm_available() -> bool:
    """True when this torch runs int8 x int8 -> int32 products on the CPU (``torch._int_mm``)
    exactly; whether they are fast is ``decoder_path``'s question."""
    global _int8_ok
    if _int8_ok is None:
        try:
            a, b = torch.ones(17, 8, dtype=torch.int8), torch.ones(8, 8, dtype=torch.int8)
            _int8_ok = bool(torch._int_mm(a, b)[0, 0] == 8)
        except (RuntimeError, AttributeError):
            _int8_ok = False
    return _int8_ok


#: x86 feature flags with fast int8 dot products; without one, torch._int_mm is a slow loop
INT8_CPU_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
#: the int8 output layer is chosen only when it measures at least this much faster
INT8_MARGIN = 1.15
#: frames in the timed products (the per-frame cost does not depend on the utterance length)
MEASURE_ROWS = 256
_DISPATCH_VERSION = 1  # bump when the measurement changes: older cached decisions are ignored


@dataclass(frozen=True)
class DecoderPath:
    """How MCEM runs the decoder's output layer on this machine, and why.

    ``chosen`` is "int8" or "float32"; ``reason`` one of "measured", "cached" (a measurement
    of an earlier process), or why no measurement was needed. Speeds are of the output layer
    [MEASURE_ROWS, H] x [H, F] on one thread (multiply-adds x 2 per second, 1e9, of the float32
    product; the int8 path's are the same products); None when not measured."""

    chosen: str
    reason: str
    float32_gflops: float | None = None
    int8_gflops: float | None = None
    hidden: int = 0
    bins: int = 0

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """One line for logs and benchmarks."""
        speeds = ""
        if self.float32_gflops is not None and self.int8_gflops is not None:
            speeds = (f": int8 {self.int8_gflops:.0f} vs float32 {self.float32_gflops:.0f} "
                      f"GFLOP/s-equivalent")  # fmt: skip
        return (f"MCEM decoder output layer ({self.hidden} -> {self.bins}): {self.chosen} "
                f"({self.reason}{speeds})")  # fmt: skip


_paths: dict[tuple, DecoderPath] = {}


def cpu_flags() -> set[str] | None:
    """The CPU's feature flags (Linux /proc/cpuinfo), None where they cannot be read."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def int8_ruled_out_by_cpu() -> str | None:
    """Why this CPU's flags rule the int8 products out without measuring (x86 without
    VNNI or AMX), else None (other CPUs, or flags unreadable: measure)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return None
    flags = cpu_flags()
    if flags is None or flags & set(INT8_CPU_FLAGS):
        return None
    return "this CPU has no " + "/".join(INT8_CPU_FLAGS)


def measure_decoder_products(hidden: int, bins: int, budget_s: float = 0.02,
                             max_rounds: int = 200) -> tuple[float, float]:  # fmt: skip
    """Seconds of one output-layer product of the real shapes on one thread, (float32, int8):
    the ``addmm`` of MCEM's float32 path against ``Int8Decoder``'s two ``_int_mm`` (their
    operands' conversions replace work the float32 path does too: the hidden layer, reading
    the output). Interleaved rounds over ``budget_s`` (longer than a scheduler time slice, so
    a busy machine cannot slow every round of one path), the minimum of each. One thread: a
    busy machine stalls multi-threaded regions for whole time slices, and the question is
    which kernel is faster, which the thread count does not change."""
    g = torch.Generator().manual_seed(0)
    N, H, Fp = MEASURE_ROWS, hidden, -(-bins // 8) * 8
    h, Wt = torch.rand(N, H, generator=g), torch.randn(H, bins, generator=g)
    C = torch.randn(N, bins, generator=g)
    a1, a2, B1, B2 = (torch.randint(-127, 128, shape, generator=g, dtype=torch.int8)
                      for shape in ((N, H), (N, 2 * H), (H, Fp), (2 * H, Fp)))  # fmt: skip
    P1, P2 = torch.empty(N, Fp, dtype=torch.int32), torch.empty(N, Fp, dtype=torch.int32)

    def f32() -> None:
        torch.addmm(C, h, Wt)

    def int8() -> None:
        torch._int_mm(a1, B1, out=P1)
        torch._int_mm(a2, B2, out=P2)

    best = [float("inf"), float("inf")]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            f32(), int8()  # first-call allocations
            start = time.perf_counter()
            for r in range(max_rounds):
                for i, fn in enumerate((f32, int8)):
                    t0 = time.perf_counter()
                    fn()
                    best[i] = min(best[i], time.perf_counter() - t0)
                if r >= 2 and time.perf_counter() - start > budget_s:
                    break
    finally:
        torch.set_num_threads(threads)
    return best[0], best[1]


def _dispatch_file(hidden: int, bins: int) -> Path:
    """The cached decision's file: keyed like the library (its build key: source, flags,
    compiler, CPU) plus torch's version and the shapes."""
    lib = _lib_path.stem if _lib_path is not None else "none"
    key = "\0".join(map(str, (_DISPATCH_VERSION, lib, torch.__version__, hidden, bins,
                               INT8_MARGIN, MEASURE_ROWS)))  # fmt: skip
    return cache_dir() / f"decoder-path-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def _read_cached(path: Path) -> DecoderPath | None:
    """The cached decision, or None for a missing, unreadable or stale (other fields) file."""
    from ..errors import ReaviseError
    from ..registry import load_dataclass

    try:
        rec = json.loads(path.read_text())
        return load_dataclass(DecoderPath, {**rec, "reason": "cached"})
    except (OSError, ValueError, TypeError, ReaviseError):
        return None


def _write_cached(path: Path, choice: DecoderPath) -> None:
    """Written to a temporary name and renamed; a cache that cannot be written is skipped."""
    from ..audio import atomic_write

    try:
        atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(choice.as_dict())))
    except OSError as exc:
        log.debug("could not cache the decoder path decision in %s: %s", path, exc)


def _decide(hidden: int, bins: int) -> DecoderPath:
    """Measure (or rule out by CPU flags) the int8 output layer against float32."""
    shape = {"hidden": hidden, "bins": bins}
    if load() is None:
        return DecoderPath("float32", f"native kernels unavailable ({unavailable_reason()})", **shape)
    if not int8_gemm_available():
        return DecoderPath("float32", "this torch has no CPU torch._int_mm", **shape)
    ruled_out = int8_ruled_out_by_cpu()
    if ruled_out is not None:
        return DecoderPath("float32", ruled_out, **shape)
    t_f32, t_int8 = measure_decoder_products(hidden, bins)
    flop = 2.0 * MEASURE_ROWS * hidden * bins
    chosen = "int8" if t_int8 * INT8_MARGIN < t_f32 else "float32"
    return DecoderPath(chosen, "measured", round(flop / t_f32 / 1e9, 1),
                       round(flop / t_int8 / 1e9, 1), **shape)  # fmt: skip


def decoder_path(hidden: int, bins: int, refresh: bool = False) -> DecoderPath:
    """How MCEM's ``int8_decoder="auto"`` runs an output layer [hidden] -> [bins] here.

    Decided once per process and shapes: from the disk cache when an earlier process measured
    it, else by the CPU's flags, else by ``measure_decoder_products`` (a few ms), then cached.
    ``refresh`` measures again (benchmarks). Logged once at INFO level."""
    key = (hidden, bins)
    if not refresh and key in _paths:
        return _paths[key]
    load()  # the cache key names the library
    path = _dispatch_file(hidden, bins)
    choice = None if refresh else _read_cached(path)
    if choice is None:
        choice = _decide(hidden, bins)
        if choice.reason == "measured":
            _write_cached(path, choice)
    _paths[key] = choice
    log.info("%s", choice.summary())
    return choice


class Int8Decoder:
    """A decoder log sigma2(z) = W h(z) + b whose output layer runs as exact int8 GEMMs, for MCEM.

    The output layer is nearly all of the decoder's work. The hidden activation h and each
    output column of W become 14-bit fixed-point numbers split in two int8 limbs, multiplied
    by two ``torch._int_mm`` calls (exact int32 sums; about 2.6x cheaper than the float32
    product on a CPU with VNNI, about 25x dearer on one without), and converted back in the kernels (see ``mcem_kernels.c``).
    ``split`` is ``reavise.inference.fastpath.decoder_split(prior, ctx)``: with ``tanh_layer`` (the A-VAE; an AV prior with the lips folded in a per-frame b1), h =
    tanh(W1 z + b1) is computed in C on the fixed range [-1, 1]; otherwise h comes from torch
    and each frame gets its own scale (max |h|). Log-variance error ~1e-4 (tests, ``make
    bench``). ``MCEMConfig.int8_decoder``: "auto" uses it where ``decoder_path`` measured it
    faster, True always, False never.
    """

    def __init__(self, split, n_frames: int):
        W2, b2 = split.weight, split.bias
        F, H = W2.shape
        self.split, self.H, self.F, self.Fp = split, H, F, -(-F // 8) * 8  # _int_mm: N % 8 == 0
        if split.tanh_layer is not None:
            W1 = split.tanh_layer[0]
            self.D = W1.shape[1]
            self.W1t = W1.detach().float().t().contiguous()
        self.rebind(split)  # b1 [H], or a per-frame bias [..., T, H]
        W2 = W2.detach().double()
        sw = QS / W2.abs().amax(1).clamp_min(1e-30)  # per output column: max |W| -> QS
        Wq = torch.round(W2 * sw[:, None])
        whi = torch.round(Wq / 128)
        wlo = Wq - 128 * whi
        self.B1 = torch.zeros(H, self.Fp, dtype=torch.int8)
        self.B1[:, :F] = whi.t().to(torch.int8)
        self.B2 = torch.zeros(2 * H, self.Fp, dtype=torch.int8)
        self.B2[:H, :F] = wlo.t().to(torch.int8)
        self.B2[H:, :F] = whi.t().to(torch.int8)
        # h W = 2^7 (128 P1 + P2) rs / (QS sw): cs folds all but rs and adds log2 e
        self.cs = (128.0 / (QS * sw) * LOG2_E).float().contiguous()
        self.cs_ptr = self.cs.data_ptr()
        self.bias_log2 = (b2.detach().double() * LOG2_E).float()
        N = n_frames
        self.a1 = torch.empty(N, H, dtype=torch.int8)
        self.a2 = torch.empty(N, 2 * H, dtype=torch.int8)
        self.P1 = torch.empty(N, self.Fp, dtype=torch.int32)
        self.P2 = torch.empty(N, self.Fp, dtype=torch.int32)
        self.rowscale = None if split.tanh_layer is not None else torch.empty(N)
        self.rs_ptr = None if self.rowscale is None else self.rowscale.data_ptr()
        self.lib = load()

    def rebind(self, split) -> None:
        """Use this decoder with ``split`` from a new context: the same weights, but the first
        layer's bias may be per frame (the lips of an AV prior), so it is taken anew."""
        self.split = split
        if split.tanh_layer is not None:
            self.b1 = split.tanh_layer[1].detach().float().reshape(-1, self.H).contiguous()
            self.bias_rows = self.b1.shape[0]

    def products(self, z: torch.Tensor, eps: torch.Tensor | None = None,
                 z_new: torch.Tensor | None = None) -> None:  # fmt: skip
        """The int32 products for z (+ eps, then written to z_new) into ``P1``, ``P2``."""
        if self.rowscale is None:
            D = z.shape[-1]
            self.lib.reavise_hidden_q(
                z.numel() // D, D, self.H, _ptr(z), _ptr(eps), self.W1t.data_ptr(),
                self.b1.data_ptr(), self.bias_rows, _ptr(z_new), self.a1.data_ptr(), self.a2.data_ptr(),
            )  # fmt: skip
        else:
            if eps is not None:
                z = torch.add(z, eps, out=z_new)
            h = self.split.hidden(z).float().contiguous()
            self.lib.reavise_quantize_rows(
                h.numel() // self.H, self.H, _ptr(h), self.a1.data_ptr(), self.a2.data_ptr(),
                self.rs_ptr,
            )  # fmt: skip
        torch._int_mm(self.a1, self.B1, out=self.P1)
        torch._int_mm(self.a2, self.B2, out=self.P2)

    def dequant(self, base: torch.Tensor) -> torch.Tensor:
        """u = log2 sigma2 + offset [..., T, F] from the held products; ``base`` = offset +
        ``bias_log2`` [..., T, F]."""
        u = torch.empty_like(base)
        N = base.numel() // self.F
        self.lib.reavise_dequant(
            N, self.F, self.Fp, self.P1.data_ptr(), self.P2.data_ptr(), self.cs_ptr, self.rs_ptr,
            _ptr(base), _ptr(u),
        )  # fmt: skip
        return u


class MHStepper:
    """One E-step's MH steps (``reavise_mh_step`` in mcem_kernels.c) with its buffers bound once.

    In place over frames [..., T]: the state z [..., T, D], its log-target ``logp`` and energy
    ``e``; ``log_u`` [n_mh, ..., T] are the acceptance thresholds; kept step r writes the state's
    sigma2 = 2^u * ``scale`` into ``vs_out[r]`` (from ``vs_cur`` before the first kept step)
    and adds its energy to ``energy_sum``. Pointers are taken once, so a step costs one call.
    """

    def __init__(self, Q, scale, log_u, z, logp, e, vs_cur, vs_out, energy_sum, gamma: float):
        self.lib = load()
        # the kernels get raw pointers: hold the tensors so that none is freed while in use
        self._tensors = (Q, scale, log_u, z, logp, e, vs_cur, vs_out, energy_sum)
        self.F, self.D = Q.shape[-1], z.shape[-1]
        self.N = Q.numel() // self.F
        self.gamma = float(gamma)
        self.Q, self.scale, self.z, self.logp, self.e = map(_ptr, (Q, scale, z, logp, e))
        self.vs_cur, self.energy_sum = _ptr(vs_cur), _ptr(energy_sum)
        self.log_u = [_ptr(x) for x in log_u]
        self.vs_out = [_ptr(x) for x in vs_out]

    def _kept_args(self, r: int) -> tuple:
        kept = r >= 0
        return (
            self.scale if kept else None,
            (self.vs_cur if r == 0 else self.vs_out[r - 1]) if kept else None,
            self.vs_out[r] if kept else None,
            self.energy_sum if kept else None,
            None,
        )

    def step_int8(self, step: int, r: int, dec: Int8Decoder, base: torch.Tensor,
                  z_new: torch.Tensor, prior_new: torch.Tensor | None = None) -> None:  # fmt: skip
        """As ``__call__``, with u = ``dec.dequant`` of the products ``dec`` holds for z_new
        (``dec.products(z, eps, z_new)``), made row by row inside the kernel."""
        self.lib.reavise_mh_step_q(
            self.N, self.F, dec.Fp, self.D, dec.P1.data_ptr(), dec.P2.data_ptr(), dec.cs_ptr,
            dec.rs_ptr, _ptr(base), self.Q, _ptr(prior_new), self.gamma, self.log_u[step], _ptr(z_new),
            self.z, self.logp, self.e, *self._kept_args(r),
        )  # fmt: skip

    def __call__(self, step: int, r: int, u: torch.Tensor, z_new: torch.Tensor,
                 prior_new: torch.Tensor | None = None) -> None:  # fmt: skip
        """MH step ``step`` (kept sample ``r`` when r >= 0) for proposals z_new with log2 y ``u``;
        ``prior_new`` is log p(z_new|v) times the prior weight, None for the standard normal."""
        self.lib.reavise_mh_step(
            self.N, self.F, self.D, _ptr(u), self.Q, _ptr(prior_new), self.gamma,
            self.log_u[step], _ptr(z_new), self.z, self.logp, self.e, *self._kept_args(r),
        )  # fmt: skip


def valid_lengths(mask: torch.Tensor) -> list[int]:
    """Frames of each utterance up to its last unmasked one (``mask`` [B, T])."""
    T = mask.shape[-1]
    last = torch.where(mask > 0, torch.arange(1, T + 1, device=mask.device), 0)
    return [int(n) for n in last.amax(-1).tolist()] if T else [0] * mask.shape[0]


def nmf_step(W, H, g, Vs, Pm, mask) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One NMF M-step (W, then H, then g; see ``reavise.inference.nmf.m_step``) in C.

    W [B, K, F], H [B, T, K], g [B, T], speech variances Vs [R, B, T, F], masked power
    Pm [B, T, F], mask [B, T]; returns new (W, H, g), the inputs untouched."""
    W, H, g = W.clone(), H.clone(), g.clone()
    R, B, T, F = Vs.shape
    K = W.shape[1]
    lib, item = load(), Vs.element_size()
    # the sum over frames that updates W runs over each utterance's own frames (its rounding
    # is then the one it gets alone); H and g are updated on every frame
    for b, n in enumerate(valid_lengths(mask) if B > 1 else [T]):
        rc = lib.reavise_nmf_step(
            R, T, n, F, K, _ptr(Vs) + b * T * F * item, B * T * F, _ptr(Pm[b]), _ptr(mask[b]),
            _ptr(W[b]), _ptr(H[b]), _ptr(g[b]),
        )  # fmt: skip
        if rc != 0:
            raise MemoryError("reavise_nmf_step: out of memory")
    return W, H, g
