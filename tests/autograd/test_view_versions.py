"""Views share their base's version counter: an in-place change through a view (or to the
base of a view) is seen by every backward that saved the other, as in PyTorch."""

import numpy as np
import pytest

import ember
from ember import no_grad

VIEWS = {
    "slice": lambda b: b[0:2],
    "reshape": lambda b: b.reshape(2, 2),
    "flatten-view": lambda b: b.reshape(2, 2).flatten(),
    "transpose": lambda b: b.reshape(2, 2).T,
    "permute": lambda b: b.reshape(2, 2).permute(1, 0),
    "unsqueeze": lambda b: b.unsqueeze(0),
    "split": lambda b: b.split(2)[1],
}
READ_ONLY_VIEWS = {**VIEWS, "expand": lambda b: b.reshape(4, 1).expand(4, 3)}  # expand's view refuses writes


def _fresh():
    a = ember.tensor(np.random.default_rng().standard_normal(4).astype(np.float32), requires_grad=True)
    return a, a * 2


@pytest.mark.parametrize("make", VIEWS.values(), ids=VIEWS.keys())
def test_write_through_view_is_caught(make):
    a, b = _fresh()
    s = (b * b).sum()
    v = make(b)
    with no_grad():
        v[...] = 100
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        s.backward()


@pytest.mark.parametrize("make", READ_ONLY_VIEWS.values(), ids=READ_ONLY_VIEWS.keys())
def test_write_to_base_of_saved_view_is_caught(make):
    a, b = _fresh()
    v = make(b)
    s = (v * v).sum()
    with no_grad():
        b[...] = 100
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        s.backward()


def test_copies_keep_their_own_version():
    a, b = _fresh()
    s = (b * b).sum()
    c = b[np.array([0, 1])]  # advanced indexing copies
    with no_grad():
        c[...] = 100
    s.backward()
    np.testing.assert_allclose(a.grad.numpy(), 8 * a.detach().numpy(), rtol=1e-6)


def test_unmodified_view_backward_is_exact():
    a, b = _fresh()
    v = b.reshape(2, 2)
    (v * v).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), 8 * a.detach().numpy(), rtol=1e-6)
