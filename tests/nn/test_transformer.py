"""The Transformer layers (ember.nn.transformer) against PyTorch's: the same parameter names, so
a PyTorch state_dict loads unchanged; the same outputs and gradients for every layout, norm
placement, activation and mask convention; 20 AdamW steps of a GPT block train alike; the
layers save and load with a model; bad arguments are named."""

import numpy as np
import pytest

import ember
from ember import nn

torch = pytest.importorskip("torch")


def copy_from(layer, theirs):
    layer.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    return layer


def assert_grads_match(ours, theirs, rtol=1e-4, atol=1e-5):
    mine = dict(ours.named_parameters())
    for name, p in theirs.named_parameters():
        np.testing.assert_allclose(mine[name].grad.numpy(), p.grad.numpy(), rtol=rtol, atol=atol, err_msg=name)


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-norm", "pre-norm"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["LNE", "NLE"])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_layer_matches_pytorch(rng, norm_first, batch_first, activation):
    torch.manual_seed(0)
    kw = {"dropout": 0.0, "activation": activation, "batch_first": batch_first, "norm_first": norm_first}
    theirs = torch.nn.TransformerEncoderLayer(32, 4, 48, **kw)
    ours = nn.TransformerEncoderLayer(32, 4, 48, **kw)
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())
    copy_from(ours, theirs)
    x = rng.standard_normal((3, 7, 32) if batch_first else (7, 3, 32)).astype(np.float32)
    padding = np.zeros((3, 7), bool)
    padding[1, 5:] = True  # the last keys of sequence 1 are padding
    causal = np.triu(np.ones((7, 7), bool), 1)  # True: may not attend
    xt, xe = torch.tensor(x, requires_grad=True), ember.tensor(x, requires_grad=True)
    yt = theirs(xt, src_mask=torch.tensor(causal), src_key_padding_mask=torch.tensor(padding))
    ye = ours(xe, src_mask=causal, src_key_padding_mask=padding)
    g = rng.standard_normal(x.shape).astype(np.float32)
    yt.backward(torch.tensor(g))
    ye.backward(ember.tensor(g))
    np.testing.assert_allclose(ye.detach().numpy(), yt.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(xe.grad.numpy(), xt.grad.numpy(), rtol=1e-4, atol=1e-5)
    assert_grads_match(ours, theirs)


@pytest.mark.parametrize("need_weights", [True, False])
def test_multihead_attention_matches_pytorch(rng, need_weights):
    torch.manual_seed(1)
    theirs = torch.nn.MultiheadAttention(16, 2)
    ours = copy_from(nn.MultiheadAttention(16, 2), theirs)
    q = rng.standard_normal((4, 2, 16)).astype(np.float32)
    kv = rng.standard_normal((6, 2, 16)).astype(np.float32)
    hidden = rng.random((2 * 2, 4, 6)) < 0.3  # per sequence and head; True: may not attend
    hidden[:, :, 0] = False
    args_t = [torch.tensor(a, requires_grad=True) for a in (q, kv, kv)]
    args_e = [ember.tensor(a, requires_grad=True) for a in (q, kv, kv)]
    ot, wt = theirs(*args_t, attn_mask=torch.tensor(hidden), need_weights=need_weights)
    oe, we = ours(*args_e, attn_mask=hidden, need_weights=need_weights)
    np.testing.assert_allclose(oe.detach().numpy(), ot.detach().numpy(), rtol=1e-5, atol=1e-6)
    if need_weights:
        np.testing.assert_allclose(we.detach().numpy(), wt.detach().numpy(), rtol=1e-5, atol=1e-6)
    else:
        assert we is None and wt is None
    ot.sum().backward()
    oe.sum().backward()
    for a, b in zip(args_e, args_t):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-4, atol=1e-6)
    assert_grads_match(ours, theirs)


def test_unbatched_input_and_per_head_weights(rng):
    torch.manual_seed(2)
    theirs = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    ours = copy_from(nn.MultiheadAttention(8, 2, batch_first=True), theirs)
    x = rng.standard_normal((5, 8)).astype(np.float32)
    ot, wt = theirs(*(torch.tensor(x),) * 3, average_attn_weights=False)
    xe = ember.tensor(x)
    oe, we = ours(xe, xe, xe, average_attn_weights=False)
    assert oe.shape == (5, 8) and we.shape == (2, 5, 5)
    np.testing.assert_allclose(oe.detach().numpy(), ot.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(we.detach().numpy(), wt.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_rms_norm_matches_pytorch(rng):
    theirs = torch.nn.RMSNorm((3, 4))
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(rng.standard_normal((3, 4)).astype(np.float32)))
    ours = copy_from(nn.RMSNorm((3, 4)), theirs)
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    xt, xe = torch.tensor(x, requires_grad=True), ember.tensor(x, requires_grad=True)
    theirs(xt).pow(2).sum().backward()
    (ours(xe) ** 2).sum().backward()
    np.testing.assert_allclose(ours(ember.tensor(x)).detach().numpy(), theirs(torch.tensor(x)).detach().numpy(),
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(xe.grad.numpy(), xt.grad.numpy(), rtol=1e-5, atol=1e-6)
    assert_grads_match(ours, theirs)


def test_a_gpt_block_trains_as_in_pytorch(rng):
    """Embedding, a pre-norm causal block with GELU, a final LayerNorm and a linear head: 20 AdamW
    steps from the same weights on the same batches give the same losses."""
    torch.manual_seed(3)
    vocab, d, t = 11, 32, 12

    def torch_model():
        return torch.nn.ModuleDict({
            "wte": torch.nn.Embedding(vocab, d),
            "block": torch.nn.TransformerEncoderLayer(d, 4, 4 * d, dropout=0.0, activation="gelu", batch_first=True,
                                                      norm_first=True),
            "ln": torch.nn.LayerNorm(d), "head": torch.nn.Linear(d, vocab)})

    theirs = torch_model()
    ours = nn.ModuleList([nn.Embedding(vocab, d),
                          nn.TransformerEncoderLayer(d, 4, 4 * d, dropout=0.0, activation="gelu", batch_first=True,
                                                     norm_first=True), nn.LayerNorm(d), nn.Linear(d, vocab)])
    names = {"wte": "0", "block": "1", "ln": "2", "head": "3"}
    ours.load_state_dict({names[k.split(".")[0]] + k[len(k.split(".")[0]):]: v.detach().numpy()
                          for k, v in theirs.state_dict().items()})
    opt_t = torch.optim.AdamW(theirs.parameters(), lr=3e-3, weight_decay=0.1)
    opt_e = ember.optim.AdamW(ours.parameters(), lr=3e-3, weight_decay=0.1)
    causal = torch.nn.Transformer.generate_square_subsequent_mask(t)
    for step in range(20):
        idx = rng.integers(0, vocab, (4, t + 1))
        x, y = idx[:, :-1], idx[:, 1:]
        h = theirs["block"](theirs["wte"](torch.tensor(x)), src_mask=causal, is_causal=True)
        loss_t = torch.nn.functional.cross_entropy(theirs["head"](theirs["ln"](h)).reshape(-1, vocab),
                                                   torch.tensor(y).reshape(-1))
        he = ours[1](ours[0](x), is_causal=True)
        loss_e = nn.functional.cross_entropy(ours[3](ours[2](he)).reshape(-1, vocab), y.reshape(-1))
        assert abs(loss_e.item() - loss_t.item()) < 1e-4, f"step {step}: {loss_e.item()} vs {loss_t.item()}"
        opt_t.zero_grad()
        loss_t.backward()
        opt_t.step()
        opt_e.zero_grad()
        loss_e.backward()
        opt_e.step()


def test_layers_save_and_load_with_a_model(rng, tmp_path):
    ember.manual_seed(4)
    model = nn.Sequential(nn.TransformerEncoderLayer(16, 2, 32, dropout=0.1, batch_first=True, norm_first=True),
                          nn.RMSNorm(16), nn.Linear(16, 3)).eval()
    path = ember.save(tmp_path / "model.safetensors", model)
    again = ember.load_model(path).eval()
    x = ember.tensor(rng.standard_normal((2, 5, 16)).astype(np.float32))
    with ember.no_grad():
        np.testing.assert_array_equal(again(x).numpy(), model(x).numpy())


def test_multihead_attention_takes_pytorchs_arguments_in_its_order(rng):
    # The 5th positional is add_bias_kv, batch_first the 9th, as in PyTorch.
    torch.manual_seed(3)
    args = (8, 2, 0.0, True, False, False, 8, None, True)  # kdim equal to embed_dim is the default layout
    theirs = torch.nn.MultiheadAttention(*args)
    ours = copy_from(nn.MultiheadAttention(*args), theirs)
    assert ours.batch_first and theirs.batch_first
    x = rng.standard_normal((2, 5, 8)).astype(np.float32)
    with torch.no_grad():
        want = theirs(*[torch.tensor(x)] * 3, need_weights=False)[0].numpy()
    np.testing.assert_allclose(ours(*[ember.tensor(x)] * 3, need_weights=False)[0].detach().numpy(), want,
                               rtol=1e-5, atol=1e-6)
    again = nn.rebuild(nn.describe(ours))  # the new arguments round-trip through a description
    assert again.batch_first and nn.describe(again) == nn.describe(ours)
    for args, kwargs, message in (((8, 2, 0.0, True, True), {}, "add_bias_kv=True"),
                                  ((8, 2), {"add_zero_attn": True}, "add_zero_attn=True"),
                                  ((8, 2), {"kdim": 4, "vdim": 6}, "kdim=4, vdim=6"),
                                  ((8, 2), {"device": "cpu", "dtype": "float64"}, "device='cpu', dtype='float64'")):
        with pytest.raises(NotImplementedError, match=rf"MultiheadAttention: {message} is not supported"):
            nn.MultiheadAttention(*args, **kwargs)


def test_bad_arguments_are_named(rng):
    with pytest.raises(ValueError, match=r"embed_dim \(10\) must be divisible by num_heads \(3\)"):
        nn.MultiheadAttention(10, 3)
    with pytest.raises(ValueError, match=r"embed_dim and num_heads must be greater than 0, got embed_dim=0"):
        nn.MultiheadAttention(0, 1)  # as PyTorch (a head of no features)
    with pytest.raises(ValueError, match=r"activation must be one of \['gelu', 'relu'\], got 'tanh'"):
        nn.TransformerEncoderLayer(8, 2, activation="tanh")
    attention = nn.MultiheadAttention(8, 2)
    x = ember.tensor(rng.standard_normal((5, 3, 8)).astype(np.float32))
    with pytest.raises(ValueError, match=r"attn_mask must have shape \(5, 5\) or \(6, 5, 5\), got \(4, 5\)"):
        attention(x, x, x, attn_mask=np.zeros((4, 5), bool))
    with pytest.raises(ValueError, match=r"key_padding_mask must have shape \(3, 5\), got \(5, 3\)"):
        attention(x, x, x, key_padding_mask=np.zeros((5, 3), bool))
    with pytest.raises(TypeError, match=r"key_padding_mask must be boolean or floating point, got int64"):
        attention(x, x, x, key_padding_mask=np.zeros((3, 5), np.int64))
    with pytest.raises(ValueError, match=r"inputs must have 8 features"):
        attention(x[..., :4], x[..., :4], x[..., :4])


@pytest.mark.parametrize("need_weights", [False, True], ids=["fused", "weights"])
def test_is_causal_with_only_a_padding_mask_stays_causal(rng, need_weights):
    # PyTorch needs the triangle as attn_mask here; Ember's is_causal supplies it and keeps the padding.
    torch.manual_seed(0)
    theirs = torch.nn.MultiheadAttention(16, 2, batch_first=True)
    ours = copy_from(nn.MultiheadAttention(16, 2, batch_first=True), theirs)
    x = rng.standard_normal((2, 6, 16)).astype(np.float32)
    padding = np.zeros((2, 6), bool)
    padding[1, 4:] = True
    causal = np.triu(np.ones((6, 6), bool), 1)
    xt = torch.tensor(x)
    want = theirs(xt, xt, xt, key_padding_mask=torch.tensor(padding), attn_mask=torch.tensor(causal),
                  need_weights=False)[0].detach().numpy()
    with ember.no_grad():
        xe = ember.tensor(x)
        got = ours(xe, xe, xe, key_padding_mask=padding, is_causal=True, need_weights=need_weights)[0].numpy()
        layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True).eval()
        later = x.copy()
        later[:, 5] += 10.0  # a change to the last position may not reach the earlier ones
        before, after = (layer(ember.tensor(v), is_causal=True, src_key_padding_mask=padding).numpy()
                         for v in (x, later))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(before[:, :5], after[:, :5])
