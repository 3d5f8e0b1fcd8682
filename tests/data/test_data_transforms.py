"""Batch transforms against straightforward per-sample loops, their randomness and their errors."""

import numpy as np
import pytest

import ember
from ember.data import transforms as T


def images(rng, shape=(16, 3, 8, 10), dtype=np.uint8):
    return rng.integers(0, 256, shape).astype(dtype)


def seeded(rng):
    """Two generators in the same state: one for the transform, one for the reference."""
    seed = int(rng.integers(2**32))
    return np.random.default_rng(seed), np.random.default_rng(seed)


@pytest.mark.parametrize("scale, dtype", [(1 / 255, np.float32), (1 / 16, np.float64), (2.0, np.float16)])
def test_to_float_matches_loop(rng, scale, dtype):
    x = images(rng)
    out = T.ToFloat(scale, dtype)(x)
    ref = np.stack([s.astype(dtype) * np.dtype(dtype).type(scale) for s in x])
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, ref)


def test_normalize_matches_loop(rng):
    x = rng.standard_normal((6, 3, 4, 5)).astype(np.float32)
    mean, std = [0.1, -0.2, 0.3], [0.5, 2.0, 1.5]
    out = T.Normalize(mean, std)(x)
    ref = np.empty_like(x)
    for n in range(len(x)):
        for c in range(3):
            ref[n, c] = (x[n, c] - np.float32(mean[c])) / np.float32(std[c])
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)
    one = T.Normalize(0.5, 0.25)(x)  # a single value applies to every channel
    np.testing.assert_allclose(one, (x - 0.5) / 0.25, rtol=1e-6)
    flat = T.Normalize([1.0, 2.0], [1.0, 4.0])(np.ones((3, 2), np.float64))
    np.testing.assert_array_equal(flat, [[0.0, -0.25]] * 3)


@pytest.mark.parametrize("size, padding, fill, shape, borders", [
    (8, 2, 0, (32, 3, 8, 8), (2, 2, 2, 2)),
    ((5, 7), (1, 3), 7, (20, 2, 6, 9), (1, 3, 1, 3)),  # torchvision's pair: (left/right, top/bottom)
    ((9, 7), (1, 2, 0, 4), 5, (16, 2, 5, 8), (1, 2, 0, 4)),  # and its four: (left, top, right, bottom)
    (4, 0, 0, (10, 6, 6), (0, 0, 0, 0)),  # (N, H, W) batches work too
    ((3, 3), [1], -1.5, (12, 1, 4, 4), (1, 1, 1, 1)),
    (4, None, 0, (6, 1, 5, 5), (0, 0, 0, 0)),
])
def test_random_crop_matches_loop(rng, size, padding, fill, shape, borders):
    dtype = np.float32 if isinstance(fill, float) else np.uint8
    x = images(rng, shape, dtype)
    mine, ref_rng = seeded(rng)
    crop = T.RandomCrop(size, padding, fill)
    out = crop(x, mine)
    h, w = crop.size
    assert crop.padding == borders
    left_pad, top_pad, right_pad, bottom_pad = borders
    height, width = shape[-2] + top_pad + bottom_pad, shape[-1] + left_pad + right_pad
    top = ref_rng.integers(0, height - h + 1, size=len(x))
    left = ref_rng.integers(0, width - w + 1, size=len(x))
    lead = [(0, 0)] * (x.ndim - 3)
    for i, s in enumerate(x):
        padded = np.pad(s, lead + [(top_pad, bottom_pad), (left_pad, right_pad)], constant_values=fill)
        np.testing.assert_array_equal(out[i], padded[..., top[i]:top[i] + h, left[i]:left[i] + w])
    assert out.shape == shape[:-2] + (h, w) and out.dtype == dtype
    assert not np.shares_memory(out, x)


def test_random_crop_pads_as_torchvision_does(rng):
    # torchvision: a pair is (left/right, top/bottom), four are (left, top, right, bottom). A crop of
    # the padded size has one offset only, so it shows the padded image itself.
    x = np.arange(6, dtype=np.uint8).reshape(1, 1, 2, 3) + 1
    pair = T.RandomCrop((2 + 2 * 2, 3 + 2 * 1), padding=(1, 2))(x, rng)[0, 0]
    np.testing.assert_array_equal(pair, [[0, 0, 0, 0, 0]] * 2 + [[0, 1, 2, 3, 0], [0, 4, 5, 6, 0]] + [[0] * 5] * 2)
    four = T.RandomCrop((2 + 2 + 0, 3 + 1 + 3), padding=(1, 2, 3, 0), fill=9)(x, rng)[0, 0]
    np.testing.assert_array_equal(four, [[9] * 7] * 2 + [[9, 1, 2, 3, 9, 9, 9], [9, 4, 5, 6, 9, 9, 9]])


def test_random_crop_picks_varied_windows_and_leaves_the_input(rng):
    x = images(rng, (64, 1, 6, 6))
    before = x.copy()
    out = T.RandomCrop(6, padding=3, fill=0)(x, rng)
    np.testing.assert_array_equal(x, before)
    offsets = set()
    for i in range(len(x)):
        padded = np.pad(x[i], [(0, 0), (3, 3), (3, 3)])
        matches = [(t, u) for t in range(7) for u in range(7) if np.array_equal(padded[:, t:t + 6, u:u + 6], out[i])]
        assert matches, f"sample {i} is not a window of its padded image"
        offsets.update(matches)
    assert len(offsets) > 10


@pytest.mark.parametrize("p", [0.0, 0.5, 1.0])
def test_horizontal_flip_matches_loop(rng, p):
    x = images(rng, (40, 3, 5, 7))
    before = x.copy()
    mine, ref_rng = seeded(rng)
    out = T.RandomHorizontalFlip(p)(x, mine)
    flips = ref_rng.random(len(x)) < p
    for i in range(len(x)):
        np.testing.assert_array_equal(out[i], x[i, :, :, ::-1] if flips[i] else x[i])
    np.testing.assert_array_equal(x, before)
    if p == 0.5:
        assert 0 < flips.sum() < len(x)


def test_compose_applies_in_order_with_one_generator(rng):
    x = images(rng, (12, 3, 8, 8))
    steps = [T.RandomCrop(6, padding=1), T.RandomHorizontalFlip(), T.ToFloat(), T.Normalize([0.5] * 3, [0.25] * 3)]
    mine, ref_rng = seeded(rng)
    out = T.Compose(steps)(x, mine)
    ref = x
    for t in steps:
        ref = t(ref, ref_rng)
    np.testing.assert_array_equal(out, ref)
    assert out.shape == (12, 3, 6, 6) and out.dtype == np.float32


def test_default_generator_and_ember_generator(rng):
    x = images(rng, (30, 3, 6, 6))
    t = T.Compose([T.RandomCrop(6, padding=2), T.RandomHorizontalFlip()])
    ember.manual_seed(5)
    a = t(x)
    ember.manual_seed(5)
    b = t(x)
    np.testing.assert_array_equal(a, b)
    c = t(x, ember.Generator(5))
    d = t(x, np.random.default_rng(5))
    np.testing.assert_array_equal(c, d)
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        t(x, 5)


def test_reprs():
    assert repr(T.ToFloat(1 / 16)) == "ToFloat(scale=0.0625, dtype=float32)"
    assert repr(T.Normalize([0.5, 0.25], [1, 2])) == "Normalize(mean=[0.5, 0.25], std=[1.0, 2.0])"
    assert repr(T.RandomCrop(32, padding=4)) == "RandomCrop(size=(32, 32), padding=(4, 4, 4, 4), fill=0)"
    assert repr(T.RandomHorizontalFlip()) == "RandomHorizontalFlip(p=0.5)"
    assert repr(T.Compose([T.RandomHorizontalFlip(1), T.ToFloat()])) == (
        "Compose(\n    RandomHorizontalFlip(p=1),\n    ToFloat(scale=0.00392157, dtype=float32),\n)")
    assert repr(T.Compose([])) == "Compose([])"


def test_normalize_errors(rng):
    x = rng.standard_normal((2, 1, 4, 4)).astype(np.float32)
    with pytest.raises(ValueError, match=r"3 channels but the batch of shape \(2, 1, 4, 4\) has 1 on axis 1"):
        T.Normalize([0.5] * 3, [0.2] * 3)(x)
    with pytest.raises(TypeError, match="floating-point batch, got dtype uint8; put ToFloat"):
        T.Normalize([0.5], [0.2])(np.zeros((2, 1, 4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"shape \(N, C, \.\.\.\)"):
        T.Normalize([0.5], [0.2])(np.zeros(4, np.float32))
    with pytest.raises(TypeError, match="NumPy array batch, got list"):
        T.Normalize([0.5], [0.2])([[1.0]])
    with pytest.raises(ValueError, match="std must be > 0"):
        T.Normalize([0.5, 0.5], [0.2, 0.0])
    with pytest.raises(ValueError, match="mean has 2 values but std has 3"):
        T.Normalize([0.5, 0.5], [1, 1, 1])
    with pytest.raises(ValueError, match="mean must be finite"):
        T.Normalize([np.nan], [1])
    with pytest.raises(TypeError, match="std must be a number or a sequence"):
        T.Normalize([0.5], ["a"])


def test_crop_flip_tofloat_compose_errors():
    with pytest.raises(ValueError, match=r"crop size \(9, 9\) is larger than the padded image \(8, 8\)"):
        T.RandomCrop(9, padding=1)(np.zeros((2, 1, 6, 6), np.uint8))
    with pytest.raises(ValueError, match="fill=-1 is not representable in the batch's dtype uint8"):
        T.RandomCrop(4, padding=1, fill=-1)(np.zeros((2, 1, 4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"shape \(N, \.\.\., H, W\)"):
        T.RandomCrop(2)(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="size must be >= 1"):
        T.RandomCrop(0)
    with pytest.raises(ValueError, match="padding must be >= 0"):
        T.RandomCrop(4, padding=-1)
    with pytest.raises(TypeError, match=r"size must be an int or a pair of ints, got \(1, 2, 3\)"):
        T.RandomCrop((1, 2, 3))
    with pytest.raises(TypeError, match=r"padding must be an int or a sequence of 1, 2 or 4 ints .*got \(1, 2, 3\)"):
        T.RandomCrop(4, padding=(1, 2, 3))
    with pytest.raises(ValueError, match=r"padding must be >= 0, got \(1, 0, -2, 0\)"):
        T.RandomCrop(4, padding=(1, 0, -2, 0))
    with pytest.raises(TypeError, match="fill must be a number"):
        T.RandomCrop(4, fill="white")
    with pytest.raises(ValueError, match=r"p must be a probability in \[0, 1\], got 1.5"):
        T.RandomHorizontalFlip(1.5)
    with pytest.raises(ValueError, match="scale must be a finite number > 0"):
        T.ToFloat(0)
    with pytest.raises(ValueError, match="dtype must be a floating-point type, got int32"):
        T.ToFloat(dtype=np.int32)
    with pytest.raises(TypeError, match="Compose: transform 1 is not callable"):
        T.Compose([T.ToFloat(), 3])


@pytest.mark.parametrize("make, error, match", [
    (lambda: T.RandomCrop(32.0), TypeError, r"RandomCrop: size must be an int or a pair of ints, got 32.0"),
    (lambda: T.RandomCrop(None), TypeError, r"RandomCrop: size must be an int or a pair of ints, got None"),
    (lambda: T.RandomCrop(4, padding=2.0), TypeError, r"RandomCrop: padding must be an int or a sequence of 1, 2"),
    (lambda: T.RandomCrop(4, padding=1, fill=float("inf")), ValueError, "RandomCrop: fill must be finite"),
    (lambda: T.RandomCrop(4, padding=1, fill=float("nan")), ValueError, "RandomCrop: fill must be finite"),
    (lambda: T.Normalize([0.5], None), TypeError, "Normalize: std must be a number or a sequence of numbers"),
    (lambda: T.Normalize(None, [0.5]), TypeError, "Normalize: mean must be a number or a sequence of numbers"),
    (lambda: T.Normalize("0.5", [0.5]), TypeError, "Normalize: mean must be a number or a sequence of numbers"),
    (lambda: T.Normalize([0.5, None], [0.5]), TypeError, "Normalize: mean must be a number or a sequence"),
    (lambda: T.Compose(T.ToFloat()), TypeError, "Compose takes a list of transforms, got ToFloat"),
])
def test_arguments_of_the_wrong_kind_are_named(make, error, match):
    """Caught when the transform is made, not as a raw error from deep inside a batch."""
    with pytest.raises(error, match=match):
        make()
