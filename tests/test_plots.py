"""Figures drawn during training: ANT's labelled noise strips and histogram with a Gaussian reference."""

from __future__ import annotations

import math

import numpy as np
import torch

from robustnoise.report import plots


def test_image_rows_are_labelled_titled_and_readable():
    rows = [
        ("clean", torch.rand(16, 1, 28, 28)),
        ("generator", torch.rand(16, 1, 28, 28)),
        ("replay", torch.rand(0, 1, 28, 28)),
    ]
    fig = plots.image_rows(rows, "ANT restart 1")
    width, height = fig.get_size_inches() * fig.dpi
    assert width >= 600 and height >= 2 * 45  # was 465 x 59 px for 2 rows of 16: ~29 px per image
    assert fig._suptitle.get_text() == "ANT restart 1"
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert labels == ["clean", "generator"]  # an empty part gets no row
    assert len(fig.axes) == 2 * 16 and sum(bool(ax.images) for ax in fig.axes) == 32


def test_noise_histogram_has_a_gaussian_of_the_same_norm():
    eps, shape = 4.0, (32, 3, 8, 8)
    d = 3 * 8 * 8
    noise = torch.randn(shape)
    noise = noise / noise.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * eps
    ax = plots.noise_histogram(noise, eps, "restart 1").axes[0]
    assert len(ax.patches) == 3 and len(ax.lines) == 1  # one histogram per channel, one reference
    xs, ys = ax.lines[0].get_data()
    std = eps / math.sqrt(d)
    assert math.isclose(float(np.max(ys)), 1 / (std * math.sqrt(2 * math.pi)), rel_tol=1e-3)
    half = xs[np.abs(ys - ys.max() * math.exp(-0.5)).argmin()]  # the density falls to exp(-1/2) of its peak at 1 std
    assert math.isclose(abs(half), std, rel_tol=0.03)
    assert f"std {std:.3g}" in ax.get_legend().get_texts()[-1].get_text()
    assert math.isclose(float(noise.std()), std, rel_tol=0.05)  # the reference matches Gaussian noise of that norm
