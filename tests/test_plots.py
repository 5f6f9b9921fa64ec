"""Figure helpers: every plot returns a Figure with the expected panels, and bad input fails with a clear message."""
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from simclr_lib import plots


def test_to_hwc_accepts_uint8_float_chw_and_hwc():
    u8 = torch.randint(0, 256, (2, 3, 4, 5), dtype=torch.uint8)
    out = plots.to_hwc(u8)
    assert out.shape == (2, 4, 5, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[1, 2, 3], u8[1, :, 2, 3].numpy() / 255, atol=1e-6)
    assert plots.to_hwc(u8[0].float() / 255).shape == (1, 4, 5, 3)
    assert plots.to_hwc(np.zeros((2, 4, 4, 3), np.uint8)).shape == (2, 4, 4, 3)
    with pytest.raises(ValueError, match="B, 3, H, W"):
        plots.to_hwc(torch.zeros(2, 2, 4, 4))


def test_image_grid_and_view_rows():
    x = torch.rand(5, 3, 8, 8)
    fig = plots.image_grid(x, ncols=3, titles=list("abcde"))
    assert isinstance(fig, Figure) and len(fig.axes) == 6
    fig = plots.view_rows({"crop": x, "flip": x[:2]})
    assert len(fig.axes) == 10 and fig.axes[0].get_ylabel() == "crop"


def test_positive_mask_matches_a_loop():
    n, v = 3, 3
    want = np.zeros((n * v, n * v), bool)
    for i in range(n * v):
        for j in range(n * v):
            want[i, j] = i != j and i % n == j % n
    np.testing.assert_array_equal(plots.positive_mask_matrix(n, v), want)


def test_similarity_plots():
    z = torch.nn.functional.normalize(torch.randn(8, 4), dim=1)
    fig = plots.similarity_heatmap(z @ z.T, n_views=2)
    assert isinstance(fig, Figure) and len(fig.axes) == 2  # heatmap + colour bar
    with pytest.raises(ValueError, match="multiple of n_views"):
        plots.similarity_heatmap(torch.zeros(9, 9), n_views=2)
    assert len(plots.mask_panels(4, 2).axes) == 2
    fig = plots.softmax_vs_temperature((z @ z.T)[0, 1:], [0.1, 0.5, 1.0], positive=3)
    assert len(fig.axes) == 2 and len(fig.axes[0].get_legend().get_texts()) == 3


def test_histogram_lines():
    fig = plots.histogram_lines({"a": torch.rand(12), "b": np.ones(12)}, bins=4)
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 3
