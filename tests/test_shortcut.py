"""Colour-histogram shortcut (paper Fig. 6): histograms against a numpy loop, distances, pair accuracy, classifier."""
import numpy as np
import pytest
import torch

from simclr_lib.teaching.shortcut import color_histogram, histogram_classifier, histogram_distances, histogram_pair_accuracy


def _naive_histogram(img: np.ndarray, bins: int, joint: bool) -> np.ndarray:
    """img: (3, H, W) float in [0, 1]; one pixel at a time."""
    out = np.zeros(bins ** 3 if joint else 3 * bins)
    _, h, w = img.shape
    for y in range(h):
        for x in range(w):
            b = [min(int(img[c, y, x] * bins), bins - 1) for c in range(3)]
            if joint:
                out[(b[0] * bins + b[1]) * bins + b[2]] += 1
            else:
                for c in range(3):
                    out[c * bins + b[c]] += 1
    return out / (h * w)


@pytest.mark.parametrize("joint", [False, True])
@pytest.mark.parametrize("bins", [1, 4, 7])
def test_histogram_matches_a_pixel_loop(bins, joint):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (3, 3, 6, 5), generator=g, dtype=torch.uint8)
    x[0, :, 0, 0] = 255  # the top edge falls in the last bin
    got = color_histogram(x, bins, joint)
    want = np.stack([_naive_histogram(img.float().numpy() / 255, bins, joint) for img in x])
    np.testing.assert_allclose(got.numpy(), want, atol=1e-6)
    assert torch.allclose(color_histogram(x.float() / 255, bins, joint), got)


def test_histogram_rejects_bad_input():
    with pytest.raises(ValueError, match="B, 3, H, W"):
        color_histogram(torch.zeros(2, 1, 4, 4))


def test_crops_of_one_image_are_closer_than_crops_of_two():
    g = torch.Generator().manual_seed(1)
    base = torch.rand(16, 3, 1, 1, generator=g)  # one colour per image, plus a little noise
    a = (base + 0.05 * torch.rand(16, 3, 8, 8, generator=g)).clamp(0, 1)
    b = (base + 0.05 * torch.rand(16, 3, 8, 8, generator=g)).clamp(0, 1)
    d = histogram_distances(a, b, bins=8, generator=g)
    assert d["same"].shape == d["different"].shape == (16,)
    assert d["same"].mean() < d["different"].mean()
    assert histogram_pair_accuracy(torch.cat([a, b]), bins=8) > 0.8


def test_histogram_classifier_finds_colour_but_not_shape():
    g = torch.Generator().manual_seed(2)
    y = torch.arange(200) % 2
    colour = torch.where(y[:, None] == 1, torch.tensor([0.8, 0.2, 0.2]), torch.tensor([0.2, 0.2, 0.8]))
    x = (colour[:, :, None, None] + 0.1 * torch.rand(200, 3, 6, 6, generator=g)).clamp(0, 1)
    res = histogram_classifier(x[:100], y[:100], x[100:], y[100:], bins=4, joint=False)
    assert res["accuracy"] == 1.0 and res["chance"] == 0.5 and res["features"] == 12
    noise = torch.rand(200, 3, 6, 6, generator=g)  # colour independent of the label
    assert histogram_classifier(noise[:100], y[:100], noise[100:], y[100:], bins=4)["accuracy"] < 0.75
