"""Phonemes -> visemes -> smooth mouth-parameter trajectories (coarticulation).

Viseme classes are the 15 MPEG-4 visemes (ISO/IEC 14496-2, Annex C; as tabulated by
Lee & Yook 2002, "Audio-to-visual conversion using HMM"): sil, /p b m/, /f v/, /T D/, /t d/,
/k g/, /tS dZ S/, /s z/, /n l/, /r/, /A:/, /e/, /I/, /Q/, /U/. Consonants not listed there are
placed as in Jeffers & Barley (1971) (/Z/ with /S/, /N/ with /k g/, /j/ with /I/, /w/ with
rounded /U/, /h/ takes the velar class with weak dominance so the neighbouring vowels shape it);
diphthongs get two targets (onset and offset vowel).

Trajectories follow Cohen & Massaro (1993): each segment ``s`` has a target ``T_sp`` per
mouth parameter ``p`` and a dominance ``D_sp(t) = a_sp exp(-theta_s |tau|^c)`` (``tau`` = time
from the segment's plateau, separate ``theta`` before it (anticipation) and after it
(carry-over)); the parameter is the dominance-weighted mean ``sum_s D_sp T_sp / sum_s D_sp``,
so neighbouring segments blend instead of switching.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Mouth parameters, all in 0..1.
PARAMS = ("open", "spread", "round", "teeth", "tongue")
N_PARAMS = len(PARAMS)

# Viseme targets: (open, spread, round, teeth, tongue).
#   open: jaw + lip aperture; spread: lip-corner stretch; round: rounding/protrusion;
#   teeth: visibility of the teeth; tongue: tongue tip visible.
VISEME_TARGETS: dict[str, tuple[float, ...]] = {
    "sil": (0.00, 0.35, 0.20, 0.00, 0.00),
    "PBM": (0.00, 0.35, 0.25, 0.00, 0.00),
    "FV": (0.10, 0.45, 0.10, 1.00, 0.00),
    "TH": (0.24, 0.45, 0.10, 0.80, 1.00),
    "TD": (0.22, 0.50, 0.15, 0.65, 0.25),
    "KG": (0.32, 0.45, 0.20, 0.35, 0.00),
    "CH": (0.18, 0.15, 0.90, 0.80, 0.00),
    "SZ": (0.12, 0.70, 0.10, 1.00, 0.00),
    "NL": (0.26, 0.50, 0.15, 0.50, 0.60),
    "R": (0.20, 0.25, 0.70, 0.30, 0.00),
    "AA": (1.00, 0.55, 0.10, 0.65, 0.10),
    "EH": (0.62, 0.75, 0.05, 0.85, 0.10),
    "IH": (0.30, 1.00, 0.00, 0.90, 0.00),
    "OH": (0.72, 0.15, 0.85, 0.40, 0.00),
    "UH": (0.22, 0.00, 1.00, 0.10, 0.00),
}
VISEMES: tuple[str, ...] = tuple(VISEME_TARGETS)

# Dominance magnitude a_p per viseme (how strongly a segment imposes each parameter) and
# decay rates theta (1/s) before (anticipation) and after (carry-over) the segment.
_LIPS_FIXED = (2.0, 0.5, 0.5, 1.0, 0.3)  # bilabials/labiodentals must reach their closure
_VOWEL = (0.8, 0.8, 0.8, 0.6, 0.4)
_LINGUAL = (0.45, 0.25, 0.25, 0.6, 0.8)  # tongue consonants: lips follow the vowels
VISEME_DOMINANCE: dict[str, tuple[tuple[float, ...], float, float]] = {
    "sil": ((0.8, 0.5, 0.5, 0.8, 0.5), 15.0, 15.0),
    "PBM": (_LIPS_FIXED, 30.0, 30.0),
    "FV": (_LIPS_FIXED, 28.0, 28.0),
    "TH": (_LINGUAL, 25.0, 25.0),
    "TD": (_LINGUAL, 25.0, 25.0),
    "KG": ((0.35, 0.15, 0.15, 0.3, 0.2), 25.0, 25.0),
    "CH": ((0.6, 0.7, 0.9, 0.7, 0.3), 18.0, 22.0),
    "SZ": ((0.6, 0.5, 0.4, 0.8, 0.3), 25.0, 25.0),
    "NL": (_LINGUAL, 25.0, 25.0),
    "R": ((0.5, 0.7, 0.8, 0.3, 0.3), 20.0, 22.0),
    "AA": (_VOWEL, 15.0, 18.0),
    "EH": (_VOWEL, 15.0, 18.0),
    "IH": (_VOWEL, 15.0, 18.0),
    "OH": ((0.8, 0.9, 1.0, 0.6, 0.4), 10.0, 15.0),  # rounding is anticipated early
    "UH": ((0.8, 0.9, 1.0, 0.6, 0.4), 10.0, 15.0),
}

# espeak-ng English phoneme mnemonics (stress marks stripped) -> viseme(s). Two visemes =
# diphthong (onset, offset). Covers every phoneme the en, en-us, en-gb-* and en-029 voices emit.
PHONEME_VISEMES: dict[str, tuple[str, ...]] = {
    # pauses and prosodic markers
    "_": ("sil",), "_:": ("sil",), "_!": ("sil",), "_^_": ("sil",), "||": ("sil",), "|": ("sil",),
    ";": ("sil",), ":": ("sil",), "_#": ("sil",),
    # bilabial, labiodental, dental
    "p": ("PBM",), "b": ("PBM",), "m": ("PBM",), "m-": ("PBM",),
    "f": ("FV",), "v": ("FV",), "T": ("TH",), "D": ("TH",),
    # alveolar stops (incl. flapped/dental/glottal variants)
    "t": ("TD",), "d": ("TD",), "t#": ("TD",), "t2": ("TD",), "t[": ("TD",), "d#": ("TD",),
    "?": ("TD",), "t/": ("TD",), "d2": ("TD",),
    # velars, glottal fricative
    "k": ("KG",), "g": ("KG",), "N": ("KG",), "x": ("KG",), "h": ("KG",),
    # postalveolar
    "S": ("CH",), "Z": ("CH",), "tS": ("CH",), "dZ": ("CH",),
    # sibilants
    "s": ("SZ",), "z": ("SZ",), "s#": ("SZ",), "z#": ("SZ",),
    # nasals / laterals
    "n": ("NL",), "n-": ("NL",), "l": ("NL",), "l-": ("NL",), "@L": ("EH", "NL"), "l/": ("NL",),
    "L": ("NL",),
    # approximants
    "r": ("R",), "r-": ("R",), "R": ("R",), "r/": ("R",), "j": ("IH",), "w": ("UH",),
    "w#": ("UH",), "W": ("UH",),
    # open vowels
    "a": ("AA",), "a#": ("AA",), "aa": ("AA",), "A:": ("AA",), "A": ("AA",), "A@": ("AA", "R"),
    "A#": ("AA",), "V": ("AA",), "VR": ("AA", "R"),
    # mid/front vowels, schwas
    "E": ("EH",), "e": ("EH",), "e@": ("EH", "EH"), "@": ("EH",), "@2": ("EH",), "@5": ("EH",),
    "3": ("EH",), "3:": ("EH",), "@r": ("EH", "R"),
    # close front vowels
    "I": ("IH",), "I#": ("IH",), "I2": ("IH",), "i": ("IH",), "i:": ("IH",), "IR": ("IH", "R"),
    "i@": ("IH", "EH"), "i@3": ("IH", "EH"),
    # back rounded vowels
    "0": ("OH",), "O": ("OH",), "O:": ("OH",), "O2": ("OH",), "O@": ("OH", "R"), "o@": ("OH", "R"),
    "o": ("OH",), "Q": ("OH",),
    "U": ("UH",), "u:": ("UH",), "u": ("UH",), "U@": ("UH", "EH"),
    # diphthongs
    "aI": ("AA", "IH"), "aI2": ("AA", "IH"), "aI3": ("AA", "IH"), "aI@": ("AA", "IH"),
    "aI@3": ("AA", "EH"), "aU": ("AA", "UH"), "aU@": ("AA", "UH"), "eI": ("EH", "IH"),
    "eI@": ("EH", "IH"), "OI": ("OH", "IH"), "oU": ("OH", "UH"), "oU#": ("OH", "UH"),
    "o@3": ("OH", "R"),
}  # fmt: skip

_VOWEL_VISEMES = {"AA", "EH", "IH", "OH", "UH"}
_WEAK = {"h": 0.25, "@": 0.6, "@2": 0.6, "@5": 0.6, "3": 0.7, "I2": 0.7, "a#": 0.7, "r-": 0.5}


def strip_stress(symbol: str) -> str:
    """espeak prefixes stressed vowels with ' (primary), , (secondary) or = ; drop them."""
    return symbol.lstrip("',=")


def stress_of(symbol: str) -> int:
    """2 = primary, 1 = secondary, 0 = unstressed (from the espeak mnemonic prefix)."""
    return 2 if symbol.startswith("'") else 1 if symbol.startswith(",") else 0


def visemes_of(symbol: str) -> tuple[str, ...]:
    """Viseme class(es) of an espeak phoneme; unknown mnemonics fall back on their first
    character's class (e.g. a new vowel variant) or, failing that, a weak silence."""
    s = strip_stress(symbol)
    if s in PHONEME_VISEMES:
        return PHONEME_VISEMES[s]
    for k in range(len(s) - 1, 0, -1):
        if s[:k] in PHONEME_VISEMES:
            return PHONEME_VISEMES[s[:k]]
    return ("sil",)


@dataclass
class Segment:
    """One articulatory segment: a viseme over [start, end) seconds with a strength factor."""

    viseme: str
    start: float
    end: float
    strength: float = 1.0  # scales the target opening (vowel reduction) and dominance


def segments_from_phonemes(phonemes: list[tuple[str, float, float]]) -> list[Segment]:
    """(symbol, start_s, end_s) phonemes -> viseme segments (diphthongs split in two).

    Stressed vowels open more than unstressed ones (reduction); /h/ and schwas dominate weakly.
    """
    out: list[Segment] = []
    for sym, start, end in phonemes:
        vis = visemes_of(sym)
        s = strip_stress(sym)
        weak = _WEAK.get(s, 1.0)
        stress = stress_of(sym)
        n = len(vis)
        for i, v in enumerate(vis):
            a = start + (end - start) * i / n
            b = start + (end - start) * (i + 1) / n
            strength = weak
            if v in _VOWEL_VISEMES:
                strength *= (0.75, 0.9, 1.0)[stress]
            out.append(Segment(v, a, b, strength))
    return out


def trajectories(
    segments: list[Segment], times: np.ndarray, rate_scale: float = 1.0, c: float = 1.0
) -> np.ndarray:
    """Mouth parameters [len(times), N_PARAMS] from segments by dominance blending.

    ``D_sp(t) = a_sp * strength_s * exp(-theta_s * |tau|^c)``, ``tau`` = distance (s) from the
    middle half of the segment (zero inside it), theta = anticipatory rate before it and
    carry-over rate after it (Cohen & Massaro 1993); ``rate_scale`` < 1 widens coarticulation
    (sloppier speaker). A weak rest posture (``sil``) keeps the mean defined in long gaps.
    """
    times = np.asarray(times, dtype=np.float64)
    if not segments:
        return np.tile(np.asarray(VISEME_TARGETS["sil"]), (len(times), 1)).astype(np.float32)
    starts = np.array([s.start for s in segments])
    ends = np.array([s.end for s in segments])
    dur = np.maximum(ends - starts, 1e-3)
    lo = starts + 0.25 * dur  # plateau = middle half of the segment
    hi = ends - 0.25 * dur
    targets = np.array([VISEME_TARGETS[s.viseme] for s in segments])  # [S, P]
    strength = np.array([s.strength for s in segments])
    # Reduced vowels open less: scale the opening target by the segment strength.
    targets[:, 0] *= np.where([s.viseme in _VOWEL_VISEMES for s in segments], strength, 1.0)
    alpha = np.array([VISEME_DOMINANCE[s.viseme][0] for s in segments]) * strength[:, None]
    th_ant = np.array([VISEME_DOMINANCE[s.viseme][1] for s in segments]) * rate_scale
    th_car = np.array([VISEME_DOMINANCE[s.viseme][2] for s in segments]) * rate_scale
    t = times[None, :]  # [1, T]
    before = np.clip(lo[:, None] - t, 0.0, None)  # > 0 while the segment is still ahead
    after = np.clip(t - hi[:, None], 0.0, None)  # > 0 once it has passed
    # exp(-theta |tau|^c) with the side-specific theta; [S, T]
    decay = np.exp(-(th_ant[:, None] * before**c + th_car[:, None] * after**c))
    dom = alpha[:, :, None] * decay[:, None, :]  # [S, P, T]
    rest_w = 1e-3
    rest = np.asarray(VISEME_TARGETS["sil"])[:, None]
    num = (dom * targets[:, :, None]).sum(0) + rest_w * rest
    den = dom.sum(0) + rest_w
    return (num / den).T.astype(np.float32)


def frame_visemes(segments: list[Segment], times: np.ndarray) -> list[str]:
    """The viseme whose segment contains each time (``sil`` outside all segments)."""
    starts = np.array([s.start for s in segments]) if segments else np.zeros(0)
    idx = np.searchsorted(starts, times, side="right") - 1
    out = []
    for i, t in zip(idx, times, strict=True):
        if 0 <= i < len(segments) and t < segments[i].end:
            out.append(segments[i].viseme)
        else:
            out.append("sil")
    return out
