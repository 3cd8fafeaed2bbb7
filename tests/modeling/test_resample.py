import pytest
import torch
import torch.nn.functional as F

from maskformer.modeling.resample import MapResampler, bilinear_taps, chain_taps


def _reference(x, padded, image, output):
    """The official geometry: upsample to the padded size, crop, resize (if the size differs)."""
    y = F.interpolate(x[None], size=padded, mode="bilinear", align_corners=False)[0]
    y = y[:, : image[0], : image[1]]
    if tuple(output) != tuple(image):
        y = F.interpolate(y[None], size=output, mode="bilinear", align_corners=False)[0]
    return y


@pytest.mark.parametrize(
    "low, padded, image, output",
    [
        ((16, 16), (64, 64), (64, 64), (64, 64)),  # 4x, no crop: the benchmark case
        ((16, 20), (64, 80), (61, 77), (61, 77)),  # crop of the batch padding
        ((16, 20), (64, 80), (61, 77), (100, 37)),  # crop, then resize (up and down)
        ((13, 17), (50, 67), (50, 67), (203, 11)),  # sizes that are not multiples of 4
        ((8, 8), (32, 32), (30, 29), (7, 9)),  # strong downscale
    ],
)
@pytest.mark.parametrize("rows", [1, 5, 1000])
def test_bands_equal_the_full_resampling(low, padded, image, output, rows):
    x = torch.randn(3, *low, generator=torch.Generator().manual_seed(0)) * 5
    resampler = MapResampler(low, padded, image, output)
    got = torch.full((3, *output), float("nan"))
    for r0, r1, band in resampler.bands(x, rows):
        assert band.shape == (3, r1 - r0, output[1]) and band.is_contiguous()
        got[:, r0:r1] = band
    torch.testing.assert_close(got, _reference(x, padded, image, output), rtol=0, atol=1e-5)


def test_taps_are_pytorchs_bilinear_weights():
    for n_in, n_out in [(4, 16), (16, 4), (5, 5), (7, 13)]:
        idx, w = bilinear_taps(n_in, n_out)
        x = torch.randn(n_in)  # float32: the weights are computed as for float32 inputs
        ref = F.interpolate(x.view(1, 1, 1, -1), size=(1, n_out), mode="bilinear")[0, 0, 0]
        torch.testing.assert_close((x[idx] * w).sum(1), ref, rtol=0, atol=1e-6)
        assert torch.allclose(w.sum(1), torch.ones(n_out))


def test_chained_taps_compose():
    x = torch.randn(9, dtype=torch.float64)
    first, second = bilinear_taps(9, 20), bilinear_taps(20, 6)
    idx, w = chain_taps(first, second)
    y = (x[first[0]] * first[1].double()).sum(1)
    torch.testing.assert_close(
        (x[idx] * w.double()).sum(1), (y[second[0]] * second[1].double()).sum(1)
    )


def test_band_rows_bound_the_band_size():
    r = MapResampler((8, 8), (32, 32), (32, 32), (1000, 3000))
    assert r.band_rows(150, 1 << 20) == 2  # 150 x 2 x 3000 <= 2^20 < 150 x 3 x 3000
    assert r.band_rows(10**6, 1) == 1
