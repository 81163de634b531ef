"""Offline text-to-speech with phoneme timings: libespeak-ng (bundled by ``espeakng_loader``) via ctypes.

espeak-ng keeps global state, so one process holds one engine (:func:`engine`); parallel
synthesis uses processes, never threads. Every call returns 16 kHz float32 audio plus the
phonemes espeak emitted (its own ASCII mnemonics) with their start sample in that audio.
"""

from __future__ import annotations

import ctypes
import os
import threading
from dataclasses import dataclass

import numpy as np

from ..audio import SAMPLE_RATE, resample
from ..errors import ReaviseError

# --- speak_lib.h constants -----------------------------------------------------------------
AUDIO_OUTPUT_SYNCHRONOUS = 2
espeakINITIALIZE_PHONEME_EVENTS = 0x0001
espeakINITIALIZE_DONT_EXIT = 0x8000
espeakCHARS_UTF8 = 1
espeakENDPAUSE = 0x1000
POS_CHARACTER = 1
espeakRATE, espeakVOLUME, espeakPITCH, espeakRANGE = 1, 2, 3, 4
espeakWORDGAP = 7
espeakEVENT_LIST_TERMINATED = 0
espeakEVENT_WORD = 1
espeakEVENT_SENTENCE = 2
espeakEVENT_END = 5
espeakEVENT_MSG_TERMINATED = 6
espeakEVENT_PHONEME = 7
EE_OK = 0

# English voices (espeak identifiers; "en" is British English) and voice variants that sound human.
ENGLISH_VOICES: tuple[str, ...] = (
    "en-us", "en", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-gb-x-gbclan",
    "en-gb-x-gbcwmd", "en-us-nyc",
)  # fmt: skip
MALE_VARIANTS: tuple[str, ...] = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "adam", "benjamin", "caleb", "david", "ed",
    "edward", "ian", "john", "max", "michel", "norbert", "paul", "quincy", "rob", "robert",
    "travis", "victor", "zac",
)  # fmt: skip
FEMALE_VARIANTS: tuple[str, ...] = (
    "f1", "f2", "f3", "f4", "f5", "anika", "belinda", "linda", "steph", "shelby", "aunty",
    "Annie", "Alicia", "Andrea",
)  # fmt: skip


class _Event(ctypes.Structure):
    class _Id(ctypes.Union):
        _fields_ = [
            ("number", ctypes.c_int),
            ("name", ctypes.c_char_p),
            ("string", ctypes.c_char * 8),
        ]

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # milliseconds
        ("sample", ctypes.c_int),  # sample index at the engine rate
        ("user_data", ctypes.c_void_p),
        ("id", _Id),
    ]


_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass(frozen=True)
class Voice:
    """One espeak speaker: language voice + variant + prosody settings."""

    language: str = "en-us"
    variant: str | None = "m3"
    rate: int = 165  # words per minute (espeak range 80..450)
    pitch: int = 50  # 0..100, base pitch relative to the variant's
    pitch_range: int = 50  # 0..100, intonation range (0 = monotone)
    word_gap: int = 0  # extra pause between words, units of 10 ms

    @property
    def name(self) -> str:
        return f"{self.language}+{self.variant}" if self.variant else self.language


@dataclass
class Phoneme:
    """One phoneme event: espeak mnemonic and its start/end (samples and seconds at 16 kHz)."""

    symbol: str
    start: int
    end: int

    def to_json(self) -> list:
        return [self.symbol, self.start, self.end]


@dataclass
class Utterance:
    """Synthesised speech: float32 mono ``audio`` at ``sample_rate`` and its phoneme timings."""

    audio: np.ndarray
    phonemes: list[Phoneme]
    text: str
    voice: Voice
    sample_rate: int = SAMPLE_RATE

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate


class Engine:
    """The process-wide espeak-ng engine (synchronous mode, phoneme events on)."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:  # pragma: no cover - dependency of the package
            raise ReaviseError(
                f"espeakng_loader is not installed ({exc}); pip install espeakng-loader"
            ) from None
        lib_path = espeakng_loader.get_library_path()
        data_path = espeakng_loader.get_data_path()
        try:
            lib = ctypes.CDLL(lib_path)
        except OSError as exc:
            raise ReaviseError(f"{lib_path}: cannot load libespeak-ng ({exc})") from None
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
        ]  # fmt: skip
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        # espeak draws random numbers (breath noise, jitter) from its own generator and libc's
        # rand(); both are re-seeded before every utterance so that a seed gives identical audio.
        self._set_rand_seed = getattr(lib, "espeak_ng_SetRandSeed", None)
        if self._set_rand_seed is not None:
            self._set_rand_seed.argtypes = [ctypes.c_long]
            self._set_rand_seed.restype = None
        self._libc = ctypes.CDLL(None)
        options = espeakINITIALIZE_PHONEME_EVENTS | espeakINITIALIZE_DONT_EXIT
        sr = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 200, data_path.encode(), options)
        if sr <= 0:
            raise ReaviseError(f"{data_path}: espeak-ng failed to initialise (code {sr})")
        self.lib = lib
        self.engine_rate = int(sr)  # 22050 Hz for the standard voices
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, str]] = []
        self._cb = _CALLBACK(self._callback)  # keep a reference: ctypes must not free it
        lib.espeak_SetSynthCallback(self._cb)
        self._lock = threading.Lock()
        self.pid = os.getpid()

    def _callback(self, wav, n, events) -> int:
        """Collect audio chunks and (type, sample, phoneme) events; 0 = keep synthesising."""
        if n > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != espeakEVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == espeakEVENT_PHONEME:
                # Phoneme mnemonic packed into the int (up to 4 ASCII bytes, little endian).
                raw = bytes(ev.id.string[:4]).split(b"\0", 1)[0]
                self._events.append((ev.type, ev.sample, raw.decode("ascii", "replace")))
            elif ev.type in (espeakEVENT_WORD, espeakEVENT_END):
                self._events.append((ev.type, ev.sample, ""))
            i += 1
        return 0

    def synth_raw(
        self, text: str, voice: Voice, seed: int = 0
    ) -> tuple[np.ndarray, list[tuple[int, int, str]]]:
        """Audio at the engine rate (int16 -> float32) and the raw events, for one text.

        espeak-ng keeps static state between utterances (e.g. its flutter and echo buffers)
        that re-seeding does not reset, so the same call gives different samples later in a
        process. Each utterance is therefore synthesised in a forked child of this process,
        whose engine stays freshly initialised: same (text, voice, seed), same bytes.
        """
        if not hasattr(os, "fork"):  # pragma: no cover - non-POSIX: not bit-reproducible
            return self._synth_here(text, voice, seed)
        import pickle

        with self._lock:
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:  # child: synthesise, send the result, exit without cleanup
                code = 0
                try:
                    os.close(r)
                    try:
                        payload = pickle.dumps(("ok", self._synth_here(text, voice, seed)))
                    except BaseException as exc:  # noqa: BLE001 - sent back to the parent
                        payload = pickle.dumps(("error", str(exc)))
                    with os.fdopen(w, "wb") as f:
                        f.write(payload)
                except BaseException:  # noqa: BLE001
                    code = 1
                finally:
                    os._exit(code)
            os.close(w)
            with os.fdopen(r, "rb") as f:
                data = f.read()
            os.waitpid(pid, 0)
        if not data:
            raise ReaviseError(f"espeak-ng crashed on text {text[:40]!r}")
        status, value = pickle.loads(data)
        if status != "ok":
            raise ReaviseError(value)
        return value

    def _synth_here(
        self, text: str, voice: Voice, seed: int = 0
    ) -> tuple[np.ndarray, list[tuple[int, int, str]]]:
        """Synthesise in this process (advances espeak's hidden state)."""
        lib = self.lib
        if lib.espeak_SetVoiceByName(voice.name.encode()) != EE_OK:
            raise ReaviseError(f"espeak-ng has no voice {voice.name!r}")
        for param, value in (
            (espeakRATE, voice.rate),
            (espeakPITCH, voice.pitch),
            (espeakRANGE, voice.pitch_range),
            (espeakWORDGAP, voice.word_gap),
            (espeakVOLUME, 100),
        ):
            lib.espeak_SetParameter(param, int(value), 0)
        if self._set_rand_seed is not None:
            self._set_rand_seed(int(seed) & 0x7FFFFFFF)
        self._libc.srand(ctypes.c_uint(int(seed) & 0xFFFFFFFF))
        self._chunks, self._events = [], []
        buf = text.encode("utf-8") + b"\0"
        err = lib.espeak_Synth(buf, len(buf), 0, POS_CHARACTER, 0, espeakCHARS_UTF8, None, None)
        lib.espeak_Synchronize()
        if err != EE_OK:
            raise ReaviseError(f"espeak-ng failed on text {text[:40]!r} (code {err})")
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        events = self._events
        self._chunks, self._events = [], []
        return audio.astype(np.float32) / 32768.0, events

    def synthesize(
        self, text: str, voice: Voice, sample_rate: int = SAMPLE_RATE, seed: int = 0
    ) -> Utterance:
        """Speak ``text`` with ``voice``: 16 kHz audio + phoneme timings in output samples.

        Phoneme ``i`` spans from its event sample to the next phoneme's (the last one to the
        end of the audio); positions are rescaled from the engine rate to ``sample_rate``.
        """
        raw, events = self.synth_raw(text, voice, seed)
        if raw.size == 0:
            raise ReaviseError(f"espeak-ng produced no audio for {text[:40]!r}")
        audio = resample(raw, self.engine_rate, sample_rate).astype(np.float32)
        n = len(audio)
        scale = sample_rate / self.engine_rate
        phon = [
            (int(round(s * scale)), sym) for t, s, sym in events if t == espeakEVENT_PHONEME and sym
        ]
        phonemes: list[Phoneme] = []
        for k, (start, sym) in enumerate(phon):
            start = min(max(start, 0), n)
            if phonemes:
                start = max(start, phonemes[-1].start)  # monotone even if events jitter
            end = phon[k + 1][0] if k + 1 < len(phon) else n
            phonemes.append(Phoneme(sym, start, start))
            if k > 0:
                phonemes[-2].end = start
            phonemes[-1].end = min(max(end, start), n)
        return Utterance(audio, phonemes, text, voice, sample_rate)


_ENGINE: Engine | None = None


def engine() -> Engine:
    """The engine of this process, created on first use (re-created after a fork)."""
    global _ENGINE
    if _ENGINE is None or _ENGINE.pid != os.getpid():
        _ENGINE = Engine()
    return _ENGINE


def synthesize(
    text: str, voice: Voice | None = None, sample_rate: int = SAMPLE_RATE, seed: int = 0
) -> Utterance:
    """Speak ``text`` (default voice en-us+m3) -> :class:`Utterance`; same seed, same samples."""
    return engine().synthesize(text, voice or Voice(), sample_rate, seed)
