"""ember.gpt and ember.models.gpt: the shipped text and its tokenizer; the fused loss equals the
cross-entropy of the logits, value and gradients; fit trains it with loss="model" and clipnorm;
generation with the key/value cache equals recomputing the whole context, is seeded, and runs
past the block size; it saves and loads; bad arguments are named."""

import re
import subprocess
import sys

import numpy as np
import pytest
from concurrency import run_threads

import ember
from ember import datasets, models
from ember.gpt import CharTokenizer
from ember.nn import functional as F


@pytest.fixture(scope="module")
def text():
    return datasets.shakespeare()


def small(vocab, **kw):
    ember.manual_seed(0)
    return models.gpt(vocab, **{"block_size": 32, "n_layer": 2, "n_head": 2, "d_model": 32, **kw})


def windows(ids, count, length, rng):
    starts = rng.integers(0, len(ids) - length - 1, count)
    return np.stack([ids[s:s + length] for s in starts]), np.stack([ids[s + 1:s + length + 1] for s in starts])


def test_the_text_and_its_tokenizer(text):
    assert len(text) == 1_115_394 and text.startswith("First Citizen:\nBefore we proceed any further")
    tok = CharTokenizer.from_text(text)
    assert tok.vocab_size == 65
    ids = tok.encode(text[:1000])
    assert ids.dtype == np.int64 and tok.decode(ids) == text[:1000]
    with pytest.raises(ValueError, match=r"'€' is not in the vocabulary"):
        tok.encode("a€")
    with pytest.raises(ValueError, match=r"ids must be in \[0, 65\)"):
        tok.decode([3, 65])
    with pytest.raises(TypeError, match="ids must be integers, got dtype float64"):
        tok.decode([3.0, 4.0])


def test_the_fused_loss_is_the_cross_entropy_of_the_logits(rng):
    model = small(11)
    x, y = rng.integers(0, 11, (3, 20)), rng.integers(0, 11, (3, 20))
    fused = model.compute_loss(x, y)
    fused.backward()
    grads = {n: p.grad.numpy().copy() for n, p in model.named_parameters()}
    model.zero_grad()
    plain = F.cross_entropy(model(x).reshape(-1, 11), y.reshape(-1))
    plain.backward()
    assert abs(fused.item() - plain.item()) < 1e-6
    for n, p in model.named_parameters():
        np.testing.assert_allclose(grads[n], p.grad.numpy(), rtol=1e-4, atol=1e-6, err_msg=n)


def test_the_loss_takes_targets_of_the_shape_of_idx_only(rng):
    model = small(11)
    x, y = rng.integers(0, 11, (3, 8)), rng.integers(0, 11, (3, 8))
    want = model.compute_loss(x, y).item()
    for same in (y.tolist(), ember.tensor(y), y.astype(np.int32)):  # lists, tensors, other integers
        assert model.compute_loss(x.tolist(), same).item() == pytest.approx(want, rel=1e-6)
    with ember.no_grad():
        logits = model(x).numpy().reshape(-1, 11)
    z = logits - logits.max(1, keepdims=True)
    exact = -(z[np.arange(24), y.reshape(-1)] - np.log(np.exp(z).sum(1))).mean()
    assert want == pytest.approx(exact, rel=1e-5)
    for bad in (y.T.copy(), y[:, :-1], y.reshape(-1), [[1, 2], [3, 4]]):  # (length, batch) would pair wrong
        with pytest.raises(ValueError, match=rf"targets must have the shape of idx \(3, 8\), got "
                                             rf"{re.escape(str(np.shape(bad)))}"):
            model.compute_loss(x, bad)


def test_fit_trains_it(text, rng):
    tok = CharTokenizer.from_text(text)
    ids = tok.encode(text[:200_000])
    x, y = windows(ids, 512, 32, rng)
    model = small(tok.vocab_size)
    model.compile(optimizer="adamw", loss="model", lr=3e-3, clipnorm=1.0)
    before = model.evaluate(x[:128], y[:128])["loss"]
    history = model.fit(x, y, batch_size=32, epochs=2, verbose=0, validation_data=(x[:128], y[:128]))
    assert history.history["val_loss"][-1] < before - 0.5  # from ~4.2 (uniform over 65) down


@pytest.fixture(params=["native", "modules"])
def steps(request, monkeypatch):
    """Generation on the native decoder (the CPU default) or through the model's modules."""
    if request.param == "modules":
        monkeypatch.setattr(ember.gpt.GPT, "_native", lambda self: False)
    return request.param


def test_generation_with_the_cache_equals_recomputing_the_context(rng, steps):
    model = small(13).eval()
    prompt = rng.integers(0, 13, (2, 5))
    got = model.generate(prompt, 27, temperature=0)  # 32 tokens: the whole block, never cropped
    ids = prompt
    with ember.no_grad():
        for _ in range(27):
            ids = np.concatenate([ids, model(ids).numpy()[:, -1].argmax(-1)[:, None]], axis=1)
    np.testing.assert_array_equal(got, ids)


def test_sampling_is_seeded_and_runs_past_the_block(rng, steps):
    model = small(13)
    prompt = rng.integers(0, 13, 40)  # longer than the block: its last 32 tokens are the context
    first = model.generate(prompt, 50, temperature=0.9, top_k=5, generator=ember.Generator().manual_seed(4))
    again = model.generate(prompt, 50, temperature=0.9, top_k=5, generator=ember.Generator().manual_seed(4))
    assert first.shape == (90,) and np.array_equal(first[:40], prompt)
    np.testing.assert_array_equal(first, again)
    assert first.min() >= 0 and first.max() < 13
    assert model.training  # generate leaves the mode as it found it
    # top_k keeps the k most likely tokens only: with k = 1 sampling is greedy decoding, and the
    # first sampled token is always among the five most likely.
    greedy = model.generate(prompt, 50, temperature=0)
    best = model.generate(prompt, 50, temperature=0.9, top_k=1, generator=ember.Generator().manual_seed(4))
    np.testing.assert_array_equal(best, greedy)
    tiny = model.generate(prompt, 50, temperature=1e-310, generator=ember.Generator().manual_seed(4))
    np.testing.assert_array_equal(tiny, greedy)  # the limit of a vanishing temperature (it drew token 0 from NaN)
    with ember.no_grad():
        model.eval()
        top5 = set(np.argsort(model(prompt[None, -32:]).numpy()[0, -1])[-5:].tolist())
        model.train()
    drawn = {int(model.generate(prompt, 1, temperature=2.0, top_k=5, generator=ember.Generator().manual_seed(s))[-1])
             for s in range(40)}
    assert drawn <= top5 and len(drawn) > 1, (drawn, top5)  # sampled, within the top 5
    other = model.generate(prompt, 50, temperature=0.9, top_k=5, generator=ember.Generator().manual_seed(5))
    assert not np.array_equal(other, first) and not np.array_equal(first, greedy)


def test_generate_never_changes_the_modes(rng, steps, monkeypatch):
    # Two generations at once once left a training model in eval mode (each saved and restored
    # the modes around its own run); generate now computes in eval semantics without touching them.
    model = small(13, dropout=0.5)
    model.drop.eval()  # a module frozen in eval mode inside the training model stays so
    modes = [m.training for m in model.modules()]
    prompt = rng.integers(0, 13, (2, 6))
    want = model.eval().generate(prompt, 12, temperature=0)
    model.train()
    model.drop.eval()
    seen = []
    sample = ember.gpt._sample

    def watching(*args):
        seen.append([m.training for m in model.modules()])
        return sample(*args)

    monkeypatch.setattr(ember.gpt, "_sample", watching)
    np.testing.assert_array_equal(model.generate(prompt, 12, temperature=0), want)  # no dropout
    assert seen and all(s == modes for s in seen)  # the modes, untouched during the generation

    def work(i):
        for _ in range(3):
            np.testing.assert_array_equal(model.generate(prompt, 12, temperature=0), want)

    run_threads(work, 4)
    assert [m.training for m in model.modules()] == modes


def test_it_saves_and_loads(tmp_path, rng):
    model = small(9).eval()
    path = ember.save(tmp_path / "gpt.safetensors", model)
    again = ember.load_model(path).eval()
    x = rng.integers(0, 9, (2, 7))
    with ember.no_grad():
        np.testing.assert_array_equal(again(x).numpy(), model(x).numpy())
    loaded = subprocess.run([sys.executable, "-c", f"import sys, ember; ember.load_model({str(path)!r}); "
                             "print('ember.gpt' in sys.modules)"], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "True"  # a fresh process finds the class from the file alone


def test_bad_arguments_are_named(rng):
    with pytest.raises(ValueError, match=r"GPT: n_head must be a positive int, got 0"):
        models.gpt(10, n_head=0)
    model = small(10)
    with pytest.raises(ValueError, match=r"sequences must hold 1 to block_size=32 tokens, got 33"):
        model(rng.integers(0, 10, (1, 33)))
    with pytest.raises(ValueError, match=r"tokens must be integer ids of shape \(batch, length\)"):
        model(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"top_k must be a positive int or None"):
        model.generate([1, 2], 3, top_k=0)
    with pytest.raises(ValueError, match=r"temperature must be >= 0"):
        model.generate([1, 2], 3, temperature=-1.0)
    with pytest.raises(ValueError, match=r"loss='model' takes no metrics"):
        model.compile(loss="model", metrics=["accuracy"])
    with pytest.raises(ValueError, match=r"loss='model' needs a model with a compute_loss"):
        ember.nn.Linear(2, 2).compile(loss="model")
    with pytest.raises(ValueError, match=r"clipnorm must be a positive number or None"):
        model.compile(loss="model", clipnorm=0)


def test_int4_quantization_keeps_generation_working(tmp_path, rng):
    """quantize() makes every matrix int4 -- each block's stacked input projection, output
    projection and feed-forward, and the tied head (the embedding itself stays float32); the
    logits move by about the int4 step, greedy generation runs on the native decoder as through
    the modules, and the quantized model saves and loads."""
    model = small(13).eval()
    qmodel, report = ember.quant.quantize(model, bits=4)
    assert report.layers == 2 * 4 + 1
    assert {type(m).__name__ for b in qmodel.blocks
            for m in (b.linear1, b.linear2, b.self_attn.out_proj, b.self_attn.in_proj)} | {type(qmodel.head).__name__} \
        == {"QuantLinear"}
    assert not any("in_proj_weight" in k for k in qmodel.state_dict())
    assert report.bytes_before == 4 * sum(p.numel() for n, p in model.named_parameters()
                                          if p.ndim == 2 and not n.startswith("wpe"))
    assert report.bytes_after < report.bytes_before / 5
    x = rng.integers(0, 13, (2, 12))
    with ember.no_grad():
        full, quantized = model(x).numpy(), qmodel(x).numpy()
    assert np.abs(quantized - full).max() < 0.1 * np.abs(full).max()
    assert qmodel._native()
    tokens = qmodel.generate(x[0, :4], 40, temperature=0)
    assert tokens.shape == (44,) and tokens.min() >= 0 and tokens.max() < 13
    slow = ember.gpt._Steps(qmodel)
    ids = tokens[None, :32]
    np.testing.assert_allclose(_decode(qmodel, ids), slow.start(ids), rtol=1e-5, atol=1e-5)
    again = ember.load_model(ember.save(tmp_path / "q.safetensors", qmodel)).eval()
    np.testing.assert_array_equal(again.generate(x[0, :4], 40, temperature=0), tokens)


def _decode(model, ids):
    decoder = model.decoder(len(ids))
    for j in range(ids.shape[1]):
        logits = decoder.step(np.ascontiguousarray(ids[:, j]))
    return logits


@pytest.mark.parametrize("bits", [8, 4])
def test_quantized_attention_layers_run_save_and_load(tmp_path, rng, bits):
    """Outside a GPT too: a TransformerEncoderLayer's attention quantizes its stacked input
    projection (self-attention in one product, cross-attention a part of it each), the model
    saves and loads as quantized, and a quantized layer's forward stays near the float one."""
    ember.manual_seed(2)
    model = ember.nn.Sequential(ember.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True),
                                ember.nn.Linear(32, 3)).eval()
    qmodel, report = ember.quant.quantize(model, bits=bits)
    attention = qmodel[0].self_attn
    assert report.layers == 5 and type(attention.in_proj).__name__ == "QuantLinear"
    assert attention.in_proj_weight is None and "0.self_attn.in_proj.weight_data" in qmodel.state_dict()
    x = ember.tensor(rng.standard_normal((2, 7, 32)).astype(np.float32))
    m = ember.tensor(rng.standard_normal((2, 5, 32)).astype(np.float32))
    with ember.no_grad():
        full, quantized = model(x).numpy(), qmodel(x).numpy()
        cross = attention(x, m, m, need_weights=False)[0].numpy()
        cross_float = model[0].self_attn(x, m, m, need_weights=False)[0].numpy()
    # Quantization noise relative to the output's norm (over 300 random inputs: median 1.0% for int8,
    # 9.6% for int4, worst 1.5% and 13.5%); the largest element's error relative to the largest
    # element is far more spread out (int4: up to 17%) and decides nothing.
    tolerance = 0.02 if bits == 8 else 0.15
    assert np.linalg.norm(quantized - full) < tolerance * np.linalg.norm(full)
    assert np.linalg.norm(cross - cross_float) < tolerance * np.linalg.norm(cross_float)
    again = ember.load_model(ember.save(tmp_path / "q.safetensors", qmodel)).eval()
    assert again[0].self_attn.in_proj_weight is None
    with ember.no_grad():
        np.testing.assert_array_equal(again(x).numpy(), quantized)
    with pytest.raises(ValueError, match="holds a quantized model"):
        model.load(tmp_path / "q.safetensors")
