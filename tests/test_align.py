import numpy as np
import pytest
import torch

from reavise.align import align_mask_to_stft, align_video_to_stft, video_to_stft_weights


@pytest.mark.parametrize("fps", [25.0, 29.97, 30.0, 50.0])
def test_alignment_interpolates_a_linear_ramp_exactly(fps):
    # a video whose frame k holds the value k/fps (its time): aligned values are STFT times
    n_video = 90
    frames = (np.arange(n_video) / fps).reshape(-1, 1)
    n_stft = 150
    out = align_video_to_stft(frames, fps, n_stft)[:, 0]
    t = np.arange(n_stft) * 256 / 16000
    inside = t <= (n_video - 1) / fps
    assert np.allclose(out[inside], t[inside], atol=1e-6)
    assert np.allclose(out[~inside], (n_video - 1) / fps)  # clamped at the end


def test_alignment_30fps_indices():
    left, right, w = video_to_stft_weights(30, 30.0, 63)
    # STFT frame 25 is at 0.4 s = video frame 12.0 exactly
    assert left[25] == 12 and w[25] == pytest.approx(0.0)
    # STFT frame 1 is at 0.016 s = video frame 0.48
    assert left[1] == 0 and right[1] == 1 and w[1] == pytest.approx(0.48)


def test_alignment_torch_matches_numpy_and_has_gradients():
    frames = torch.rand(40, 3, 3, requires_grad=True)
    out = align_video_to_stft(frames, 25.0, 100)
    ref = align_video_to_stft(frames.detach().numpy(), 25.0, 100)
    assert np.allclose(out.detach().numpy(), ref, atol=1e-6)
    out.sum().backward()
    assert frames.grad is not None and frames.grad.sum() > 0


def test_mask_alignment_invalid_neighbours():
    mask = np.ones(30, bool)
    mask[10] = False
    m = align_mask_to_stft(mask, 30.0, 63)
    t = np.arange(63) * 256 / 16000 * 30
    expect = ~((t > 9) & (t < 11))
    assert (m == expect).all()
