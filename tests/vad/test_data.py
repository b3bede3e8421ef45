"""Tests of softwidth_studies.vad.data: spectra, cache and training batches."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from softwidth_studies.data.audio import read_audio
from softwidth.errors import SoftWidthError
from softwidth.layers import LogMel
from softwidth_studies.vad.data import CropBatches, load_split, power_spectrum, snr_bin


def test_power_spectrum_matches_the_logmel_front_end_and_labels_frames():
    x = torch.randn(16000 * 2 + 37, generator=torch.Generator().manual_seed(0))
    p = power_spectrum(x)
    assert p.shape == (200, 201)
    ref = LogMel(n_fft=400, hop_length=160).power(x)[:200]
    torch.testing.assert_close(p, ref, rtol=1e-3, atol=1e-3)


def test_load_split_caches_spectra_and_reuses_them(corpus):
    split = load_split(corpus, "test")
    assert split.power.shape == (4, 800, 201) and split.power.dtype == np.float16
    assert split.labels.shape == (4, 800) and len(split) == 4 and split.hours == pytest.approx(4 * 8 / 3600)
    audio = read_audio(corpus / "test" / "test-00001.wav", 16000)
    ref = power_spectrum(audio)[:800].numpy()
    np.testing.assert_allclose(split.power[1].astype(np.float32), ref, rtol=2e-3, atol=1e-6)
    cache = corpus / "features" / "power-test.npy"
    stamp = os.path.getmtime(cache)
    again = load_split(corpus, "test")
    assert os.path.getmtime(cache) == stamp and np.array_equal(again.power, split.power)


def test_load_split_of_a_missing_split_says_how_to_build(tmp_path):
    with pytest.raises(SoftWidthError, match="softwidth data build vad"):
        load_split(tmp_path, "train")


def test_crop_batches_are_seeded_shaped_and_cover_the_split(corpus):
    split = load_split(corpus, "train")
    a = CropBatches(split, batch_size=4, frames=100, seed=3)
    b = CropBatches(split, batch_size=4, frames=100, seed=3)
    assert len(a) == 6 * 800 // 400
    first = list(a)
    assert all(p.shape == (4, 100, 201) and y.shape == (4, 100) for p, y in first)
    assert all(torch.equal(p, q) for (p, _), (q, _) in zip(first, b))
    assert not torch.equal(first[0][0], next(iter(a))[0])  # the next epoch draws new crops
    # a crop's labels are the labels of the frames it took
    p, _y = first[0]
    rows = [i for i in range(6) if any(torch.equal(p[0], torch.from_numpy(split.power[i, s:s + 100].astype(np.float32)))
                                       for s in range(701))]
    assert rows
    with pytest.raises(SoftWidthError, match="frames"):
        CropBatches(split, frames=801)


def test_snr_bins():
    assert [snr_bin(s) for s in ("clean", "-5", "4.99", "5", "14.9", "15", "24.9", "25", "40")] == [
        "clean", "<5", "<5", "5-15", "5-15", "15-25", "15-25", ">=25", ">=25"]
