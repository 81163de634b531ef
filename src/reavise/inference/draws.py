"""Random draws of a padded utterance batch, each utterance from its own generator.

An EM run enhances several utterances at once, padded to the longest. If all of them drew
from one generator, an utterance's noise would depend on which others share its batch, on
their order and on the padding. Here utterance ``b`` has its own ``torch.Generator`` and
every draw is made at its own length, then written into the padded batch: its numbers
depend only on its seed and its number of frames. Padded frames get a constant (``fill``).
With one utterance the numbers are those of a single generator drawing the whole tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch


def derived_seed(seed: int, index: int) -> int:
    """A seed for part ``index`` of an input (e.g. its chunk), from the run's ``seed``.

    Part 0 keeps ``seed`` itself; other parts mix (seed, index) through NumPy's
    SeedSequence, so neighbouring parts do not reuse one another's stream."""
    if index == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(index)]).generate_state(1)[0])


class BatchDraws:
    """Per-utterance generators for a batch of ``len(lengths)`` utterances padded to ``T``.

    ``lengths[b]`` is utterance b's number of real frames; ``seeds[b]`` its seed."""

    def __init__(self, seeds: Sequence[int], lengths: Sequence[int], T: int, device=None):
        if len(seeds) != len(lengths):
            raise ValueError(f"{len(seeds)} seeds for {len(lengths)} utterances")
        self.gens = [torch.Generator(device=device or "cpu").manual_seed(int(s)) for s in seeds]
        self.lengths = [int(n) for n in lengths]
        self.T = int(T)
        self.device = device

    @property
    def batch(self) -> int:
        return len(self.gens)

    def frames(
        self,
        draw: Callable[..., torch.Tensor],
        lead: tuple[int, ...] = (),
        tail: tuple[int, ...] = (),
        dtype: torch.dtype = torch.float32,
        fill: float = 0.0,
    ) -> torch.Tensor:
        """``draw`` (torch.randn or torch.rand) of shape [*lead, B, T, *tail]: utterance b's
        block [*lead, lengths[b], *tail] from its generator, ``fill`` in padded frames."""
        out = torch.full((*lead, self.batch, self.T, *tail), fill, dtype=dtype, device=self.device)
        pre = (slice(None),) * len(lead)
        for b, (gen, n) in enumerate(zip(self.gens, self.lengths, strict=True)):
            block = draw((*lead, n, *tail), generator=gen, dtype=dtype, device=self.device)
            out[(*pre, b, slice(0, n))] = block
        return out

    def per_utterance(
        self,
        draw: Callable[..., torch.Tensor],
        shape: tuple[int, ...],
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """``draw`` of shape [B, *shape] (no time axis, e.g. NMF bases), one row per generator."""
        rows = [draw(shape, generator=g, dtype=dtype, device=self.device) for g in self.gens]
        return torch.stack(rows)

    def like(self, z: torch.Tensor, draw=torch.randn, lead: tuple[int, ...] = ()) -> torch.Tensor:
        """``draw`` shaped [*lead, *z.shape] for a frame tensor ``z`` [B, T, *tail]."""
        return self.frames(draw, lead, tuple(z.shape[2:]), z.dtype)


class SharedDraws:
    """The :class:`BatchDraws` interface over one ``torch.Generator`` for the whole batch
    (each tensor drawn in one call, padding included): for callers that pass a plain
    generator to an E-step, e.g. tests that replay its draws."""

    def __init__(self, gen: torch.Generator, B: int, T: int, device=None):
        self.gen, self.batch, self.T, self.device = gen, B, T, device

    def frames(self, draw, lead=(), tail=(), dtype=torch.float32, fill: float = 0.0):
        shape = (*lead, self.batch, self.T, *tail)
        return draw(shape, generator=self.gen, dtype=dtype, device=self.device)

    def per_utterance(self, draw, shape, dtype=torch.float32):
        return draw((self.batch, *shape), generator=self.gen, dtype=dtype, device=self.device)

    def like(self, z: torch.Tensor, draw=torch.randn, lead=()) -> torch.Tensor:
        return self.frames(draw, lead, tuple(z.shape[2:]), z.dtype)


def as_draws(gen, z: torch.Tensor) -> BatchDraws | SharedDraws:
    """``gen`` as a draws object for frame tensors like ``z`` [B, T, ...] (a plain
    ``torch.Generator``, or None for torch's global one: one stream for the whole batch)."""
    if gen is None or isinstance(gen, torch.Generator):
        return SharedDraws(gen, z.shape[0], z.shape[1], z.device)
    return gen
