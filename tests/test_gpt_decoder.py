"""GPT.decoder (ember._C.Decoder): one native call per position equals the model's forward at
every position -- float32, int8, int4 and int4 with a codebook, GELU and ReLU, odd sizes, several sequences --
starts again after reset(), and refuses what it cannot take by name."""

import threading

import numpy as np
import pytest

import ember
from ember import _C, models


def model_with(rng, vocab=11, block=20, layers=2, heads=3, width=24, activation="gelu"):
    ember.manual_seed(1)
    model = models.gpt(vocab, block_size=block, n_layer=layers, n_head=heads, d_model=width).eval()
    with ember.no_grad():
        for p in model.parameters():  # biases, norms and embeddings away from their starting values
            p._data[...] += rng.normal(0, 0.1, p.shape).astype(np.float32)
    for b in model.blocks:
        b.activation = activation
    return model


def stepped(model, ids):
    """The logits after each position, from one decoder stepping through ids (batch, length)."""
    decoder = model.decoder(len(ids))
    out = [decoder.step(np.ascontiguousarray(ids[:, j])) for j in range(ids.shape[1])]
    assert decoder.position == ids.shape[1]
    return np.stack(out, axis=1)


@pytest.mark.parametrize("activation", ["gelu", "relu"])
@pytest.mark.parametrize("bits", [None, 8, "8g", 4, "4cb"])
def test_each_step_equals_the_forward(rng, activation, bits):
    model = model_with(rng, activation=activation)
    if bits is not None:
        form = {"8g": {"bits": 8, "group_size": 32}, "4cb": {"bits": 4, "codebook": True}}.get(bits, {"bits": bits})
        model, _ = ember.quant.quantize(model, **form)
    ids = rng.integers(0, 11, (3, 20))  # the whole block
    with ember.no_grad():
        full = model(ids).numpy()
    got = stepped(model, ids)
    tight = {"rtol": 2e-5, "atol": 2e-5 * np.abs(full).max()}
    if bits is None:
        np.testing.assert_allclose(got, full, **tight)
    else:
        # The activations are rounded to int8 inside each product, so where the forward's sums and
        # the decoder's differ in the last bit (attention over a cache, summed in another order), a
        # value on a rounding edge lands one int8 step away, and the cached keys carry it on. At
        # position 0 attention is exact (one key), so the two agree there as in float32.
        np.testing.assert_allclose(got[:, 0], full[:, 0], **tight)
        assert np.abs(got - full).max() < 0.05 * np.abs(full).max()


@pytest.mark.parametrize("heads, width, block", [(2, 128, 150), (3, 60, 70), (1, 16, 300)],
                         ids=["head64-cache150", "head20-cache70", "head16-cache300"])
def test_long_caches_and_wide_heads_equal_the_forward(rng, heads, width, block):
    # Caches and head sizes that take the decode kernel's every block of vectors (8, 4, 2 and 1
    # native vectors of scores and of values) and the values' scalar tail (head size 20).
    model = model_with(rng, block=block, layers=1, heads=heads, width=width)
    ids = rng.integers(0, 11, (1, block))
    with ember.no_grad():
        full = model(ids).numpy()
    np.testing.assert_allclose(stepped(model, ids), full, rtol=2e-5, atol=2e-5 * np.abs(full).max())


def test_reset_starts_again_and_a_full_cache_is_refused(rng):
    model = model_with(rng, block=5)
    ids = rng.integers(0, 11, (1, 5))
    decoder = model.decoder(1)
    first = [decoder.step(ids[:, j].copy()) for j in range(5)]
    with pytest.raises(ValueError, match=r"Decoder.step: the cache is full: all 5 positions are taken"):
        decoder.step(ids[:, 0].copy())
    assert decoder.position == 5
    decoder.reset()
    again = [decoder.step(ids[:, j].copy()) for j in range(5)]
    np.testing.assert_array_equal(np.stack(first), np.stack(again))


def test_it_reads_the_weights_as_they_are_now(rng):
    """The decoder keeps the arrays, not copies: a weight changed in place changes the next step."""
    model = model_with(rng)
    decoder = model.decoder(1)
    before = decoder.step(np.array([3]))
    with ember.no_grad():
        model.ln_f.bias._data[...] += 1.0
    decoder.reset()
    after = decoder.step(np.array([3]))
    with ember.no_grad():
        np.testing.assert_allclose(after, model(np.array([[3]])).numpy()[:, 0], rtol=1e-5, atol=1e-5)
    assert not np.allclose(before, after)


def test_steps_from_two_threads_take_turns(rng):
    model = model_with(rng, block=64)
    decoders, results = [model.decoder(2) for _ in range(2)], [None, None]
    shared = model.decoder(1)
    errors = []

    def run(i):
        try:
            ids = np.array([i + 1, i + 2])
            results[i] = [decoders[i].step(ids) for _ in range(20)]
            for _ in range(30):
                shared.step(np.array([i]))
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and shared.position == 60
    np.testing.assert_array_equal(results[0][5], stepped(model, np.array([[1] * 6, [2] * 6]))[:, 5])


def test_bad_input_is_named(rng):
    model = model_with(rng)
    decoder = model.decoder(2)
    with pytest.raises(ValueError, match=r"Decoder.step: tokens must be in \[0, 11\), got 11"):
        decoder.step(np.array([0, 11]))
    with pytest.raises(TypeError, match=r"Decoder.step: tokens must have dtype int64, got int32"):
        decoder.step(np.array([0, 1], np.int32))
    with pytest.raises(ValueError, match=r"Decoder.step: tokens has shape \(1,\): dimension 0 must be 2"):
        decoder.step(np.array([0]))
    assert decoder.position == 0  # nothing was cached by a refused step
    e, p = model.wte.weight._data, model.wpe.weight._data
    norm = (None, None, 1e-5)
    good = (np.zeros((24, 24), np.float32), None)
    block = (norm, (np.zeros((72, 24), np.float32), None), good, norm, (np.zeros((40, 24), np.float32), None),
             (np.zeros((24, 40), np.float32), None))
    _C.Decoder(1, 20, 3, e, p, [block], norm, (e, None))  # a well-formed one
    bad_qkv = (norm, (np.zeros((70, 24), np.float32), None), *block[2:])
    with pytest.raises(ValueError, match=r"Decoder: block 0 qkv weight has shape \(70, 24\): dimension 0 must be 72"):
        _C.Decoder(1, 20, 3, e, p, [bad_qkv], norm, (e, None))
    with pytest.raises(ValueError, match=r"Decoder: the width 24 must be a multiple of heads 5"):
        _C.Decoder(1, 20, 5, e, p, [block], norm, (e, None))
    with pytest.raises(ValueError, match=r"Decoder: wpe has shape \(20, 24\): dimension 0 must be 21"):
        _C.Decoder(1, 21, 3, e, p, [block], norm, (e, None))
    with pytest.raises(ValueError, match=r"activation must be 'gelu' or 'relu', got 'tanh'"):
        _C.Decoder(1, 20, 3, e, p, [block], norm, (e, None), "tanh")
    with pytest.raises(ValueError, match=r"Decoder: block 0 norm1 eps must be finite and >= 0"):
        _C.Decoder(1, 20, 3, e, p, [((None, None, float("nan")), *block[1:])], norm, (e, None))
    with pytest.raises(ValueError, match=r"Decoder: block 0 linear1: bits must be 8 or 4, got 3"):
        _C.Decoder(1, 20, 3, e, p, [(*block[:4], (3, 40, 24, 32, None, None, None, None), block[5])], norm, (e, None))
    q4 = ember.quant.quantize_weight(np.ones((40, 24), np.float32), 4)
    with pytest.raises(ValueError, match=r"Decoder: block 0 linear1 data has shape \(752,\): dimension 0 must be 768"):
        _C.Decoder(1, 20, 3, e, p, [(*block[:4], (4, 40, 24, 32, q4.data[:-16], q4.scales, None, None), block[5])],
                   norm, (e, None))
    wide = (*block[:4], (np.zeros((65537, 24), np.float32), None), (8, 24, 65537, 0, None, None, None, None))
    with pytest.raises(ValueError, match=r"block 0 linear2: a packed weight takes at most 65536 inputs .* got 65537"):
        _C.Decoder(1, 20, 3, e, p, [wide], norm, (e, None))  # int32 sums of 127 x 127 products would wrap
    with pytest.raises(TypeError, match=r"Decoder: block 0 qkv must be a tuple, got list"):
        _C.Decoder(1, 20, 3, e, p, [(norm, list(block[1]), *block[2:])], norm, (e, None))
    with pytest.raises(TypeError, match=r"Decoder: block 0 norm2 eps must be a number, got str"):
        _C.Decoder(1, 20, 3, e, p, [(*block[:3], (None, None, "1e-5"), *block[4:])], norm, (e, None))
    with pytest.raises(TypeError, match=r"Decoder: block 0 linear1 bits must be a number, got NoneType"):
        _C.Decoder(1, 20, 3, e, p, [(*block[:4], (None, 40, 24, 32, None, None, None, None), block[5])], norm, (e, None))
    with pytest.raises(TypeError, match=r"Decoder: wte must have dtype float32, got float64"):
        _C.Decoder(1, 20, 3, e.astype(np.float64), p, [block], norm, (e, None))
    model64 = model_with(rng)
    with ember.no_grad():
        model64.wte.weight._data = model64.wte.weight._data.astype(np.float64)
    assert not model64._native()
    with pytest.raises(ValueError, match=r"GPT.decoder: the model's weights must be float32"):
        model64.decoder()


def test_non_finite_activations_are_refused_by_a_quantized_step(rng):
    model, _ = ember.quant.quantize(model_with(rng), bits=4)
    with ember.no_grad():
        model.wte.weight._data[2, 0] = np.inf
    decoder = model.decoder(1)
    with pytest.raises(ValueError, match=r"Decoder.step: the activations overflowed to NaN or infinity"):
        decoder.step(np.array([2]))
    assert decoder.position == 0
