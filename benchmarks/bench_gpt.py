"""A GPT (6 layers, width 384, 6 heads, context 256, the 65 characters of Tiny Shakespeare) in
Ember against the same model in PyTorch eager on the CPU, alternating in rounds of one run:

- one training step, batch 16 -- ``compute_loss`` through the fused head, backward, AdamW --
  against nn.TransformerEncoderLayer blocks with PyTorch's fused attention and AdamW, in float32
  and under each library's bf16 autocast (``ember.autocast("bf16")``, ``torch.autocast("cpu",
  dtype=torch.bfloat16)``);
- generation at batch 1, 200 tokens after a 16-token prompt, greedy: Ember's ``generate``
  (its native decoder) in float32 and quantized to int8, int4 and int4 with a codebook, against a PyTorch loop with a
  key/value cache (F.scaled_dot_product_attention over the cached keys, under inference_mode).
  Besides tokens/s it reports the bytes each token reads -- the weights plus the key/value
  cache at the average position -- as a fraction of this machine's measured read bandwidth.

``extra_info`` holds the medians and the median of the rounds' ratios (PyTorch / Ember; above 1
means Ember is faster); ``-s`` prints them.

    python -m pytest benchmarks/bench_gpt.py --benchmark-only -s

As a test (``--benchmark-disable``) a tiny model runs in each: the losses agree, and the greedy
tokens of Ember's float32 decoder are PyTorch's.
"""

import numpy as np
import pytest

import ember
from ember import models
from ember.bench import machine
from helpers import THREADS, thread_limit

torch = pytest.importorskip("torch", reason="the comparison runs the same model in PyTorch")


def torch_gpt(vocab, block, layers, heads, width):
    class GPT(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = torch.nn.Embedding(vocab, width), torch.nn.Embedding(block, width)
            self.blocks = torch.nn.ModuleList([
                torch.nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, activation="gelu",
                                                 batch_first=True, norm_first=True) for _ in range(layers)])
            self.ln_f = torch.nn.LayerNorm(width)

        def forward(self, idx, targets):
            t = idx.shape[1]
            x = self.wte(idx) + self.wpe(torch.arange(t))
            mask = torch.nn.Transformer.generate_square_subsequent_mask(t)
            for block in self.blocks:
                x = block(x, src_mask=mask, is_causal=True)
            logits = self.ln_f(x) @ self.wte.weight.T
            return torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1))

    return GPT()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("threads", THREADS, ids=lambda t: f"{t}t")
def bench_gpt_training_step(benchmark, threads, precision):
    quick = getattr(benchmark, "disabled", False)
    vocab, block, layers, heads, width, batch = (65, 16, 1, 2, 32, 2) if quick else (65, 256, 6, 6, 384, 16)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, vocab, (batch, block)), rng.integers(0, vocab, (batch, block))
    ember.manual_seed(0)
    ours = models.gpt(vocab, block_size=block, n_layer=layers, n_head=heads, d_model=width)
    theirs = torch_gpt(vocab, block, layers, heads, width)
    theirs.load_state_dict({k: torch.tensor(v._host()) for k, v in ours.state_dict().items()})
    opt_e = ember.optim.AdamW(ours.parameters(), lr=1e-4)
    opt_t = torch.optim.AdamW(theirs.parameters(), lr=1e-4)
    tx, ty = torch.tensor(x), torch.tensor(y)
    losses = {}

    bf16 = precision == "bf16"

    def ember_step():
        opt_e.zero_grad()
        with ember.autocast("bf16" if bf16 else "fp32"):
            loss = ours.compute_loss(x, y)
        loss.backward()
        opt_e.step()
        losses.setdefault("ember", loss.item())

    def torch_step():
        opt_t.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = theirs(tx, ty)
        loss.backward()
        opt_t.step()
        losses.setdefault("torch", loss.item())

    figures = {}

    def run():
        with thread_limit(threads):
            ember_step(), torch_step()  # the first step of each, from the same weights
            timings = ember.bench.measure({"ember": ember_step, "torch": torch_step}, rounds=1 if quick else 5,
                                          min_time=0 if quick else 1.0, min_calls=1 if quick else 2, settle=0 if quick
                                          else 0.3)
        ratio = ember.bench.speedup(timings, "ember", "torch")[0]
        figures.update(ember_ms=1e3 * timings["ember"].median, torch_ms=1e3 * timings["torch"].median, ratio=ratio)
        print(f"\nGPT training step ({layers} layers, width {width}, {heads} heads, context {block}, batch {batch}), "
              f"{precision}, {threads} thread(s): Ember {figures['ember_ms']:.0f} ms, PyTorch {figures['torch_ms']:.0f} "
              f"ms, PyTorch / Ember {ratio:.2f}")

    benchmark.group = f"GPT training step {precision}"
    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(figures, threads=threads, cpu=machine.cpu_model(), precision=precision)
    # bf16: each library rounds the matrix products' inputs its own way
    assert abs(losses["ember"] - losses["torch"]) < (2e-2 if bf16 else 1e-4) * max(1.0, abs(losses["torch"]))


def torch_generate(state, layers, heads, ids, new_tokens):
    """Greedy generation in PyTorch with a key/value cache per layer: the usual hand-written
    decoding loop over the same weights (``state``: Ember's state_dict as torch tensors)."""
    F = torch.nn.functional
    width = state["wte.weight"].shape[1]
    caches, out, x_ids, start = [None] * layers, [], torch.tensor(ids)[None], 0
    with torch.inference_mode():
        for _ in range(new_tokens):
            t = x_ids.shape[1]
            x = F.embedding(x_ids, state["wte.weight"]) + state["wpe.weight"][start:start + t]
            for i in range(layers):
                w = {k[len(f"blocks.{i}."):]: v for k, v in state.items() if k.startswith(f"blocks.{i}.")}
                h = F.layer_norm(x, (width,), w["norm1.weight"], w["norm1.bias"])
                q, k, v = F.linear(h, w["self_attn.in_proj_weight"], w["self_attn.in_proj_bias"]).view(
                    1, t, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
                if caches[i] is not None:
                    k, v = torch.cat([caches[i][0], k], 2), torch.cat([caches[i][1], v], 2)
                caches[i] = (k, v)
                o = F.scaled_dot_product_attention(q, k, v, is_causal=t > 1).transpose(1, 2).reshape(1, t, width)
                x = x + F.linear(o, w["self_attn.out_proj.weight"], w["self_attn.out_proj.bias"])
                h = F.layer_norm(x, (width,), w["norm2.weight"], w["norm2.bias"])
                x = x + F.linear(F.gelu(F.linear(h, w["linear1.weight"], w["linear1.bias"])), w["linear2.weight"],
                                 w["linear2.bias"])
            x = F.layer_norm(x[:, -1], (width,), state["ln_f.weight"], state["ln_f.bias"])
            x_ids = F.linear(x, state["wte.weight"]).argmax(-1, keepdim=True)
            out.append(int(x_ids))
            start += t
    return np.array(out)


def bytes_per_token(model, prompt, new_tokens):
    """What one generated token reads: every matrix once (float32 or packed) and, at the
    average position, the cached keys and values of every layer."""
    from ember.quant import QuantLinear

    quantized = [m for m in model.modules() if isinstance(m, QuantLinear)]
    weights = sum(m.qweight.nbytes for m in quantized)
    if not quantized:
        weights = 4 * sum(p.numel() for n, p in model.named_parameters() if p.ndim == 2 and not n.startswith("wpe"))
    average = prompt + new_tokens / 2
    return weights + 2 * 4 * len(model.blocks) * model.d_model * average


@pytest.mark.parametrize("threads", THREADS, ids=lambda t: f"{t}t")
def bench_gpt_generation(benchmark, threads):
    quick = getattr(benchmark, "disabled", False)
    vocab, block, layers, heads, width = (65, 32, 2, 2, 32) if quick else (65, 256, 6, 6, 384)
    prompt, new = (8, 12) if quick else (16, 200)
    ember.manual_seed(0)
    model = models.gpt(vocab, block_size=block, n_layer=layers, n_head=heads, d_model=width).eval()
    state = {k: torch.tensor(v._host()) for k, v in model.state_dict().items()}
    ids = np.random.default_rng(0).integers(0, vocab, prompt)
    forms = {"fp32": model, **{f"int{b}": ember.quant.quantize(model, bits=b)[0] for b in (8, 4)},
             "int4 codebook": ember.quant.quantize(model, bits=4, codebook=True)[0]}
    tokens = {}

    def ours(name):
        def run():
            tokens.setdefault(name, forms[name].generate(ids, new, temperature=0)[prompt:])
        return run

    def theirs():
        tokens.setdefault("torch", torch_generate(state, layers, heads, ids, new))

    figures = {}

    def run():
        with thread_limit(threads):
            impls = {**{f"ember {n}": ours(n) for n in forms}, "torch fp32": theirs}
            timings = ember.bench.measure(impls, rounds=1 if quick else 3, min_time=0, min_calls=1,
                                          settle=0 if quick else 0.3)
            bandwidth = 1.0 if quick else machine.read_bandwidth(threads)
        print(f"\nGPT generation, batch 1, {new} tokens after {prompt} ({layers} layers, width {width}), {threads} "
              f"thread(s), CPU {machine.cpu_model()}, read bandwidth {bandwidth:.1f} GB/s:")
        for name in forms:
            key = f"ember {name}"
            rate = new / timings[key].median
            ratio = ember.bench.speedup(timings, key, "torch fp32")[0]
            gbs = bytes_per_token(forms[name], prompt, new) * rate / 1e9
            figures[name] = {"tokens_per_s": rate, "vs_torch_fp32": ratio, "gb_per_s": gbs,
                             "of_bandwidth": gbs / bandwidth}
            print(f"  Ember {name}: {rate:.0f} tokens/s, {ratio:.2f}x PyTorch fp32, reads {gbs:.1f} GB/s "
                  f"({100 * gbs / bandwidth:.0f}% of the measured bandwidth)")
        print(f"  PyTorch fp32: {new / timings['torch fp32'].median:.0f} tokens/s")
        figures["torch_tokens_per_s"] = new / timings["torch fp32"].median

    benchmark.group = "GPT generation"
    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(figures, threads=threads, cpu=machine.cpu_model())
    np.testing.assert_array_equal(tokens["fp32"], tokens["torch"])
    # Each form's greedy decoding (the native decoder, a key/value cache) picks, at every step, the
    # most likely token of that same model's forward over the whole sequence (within rounding).
    for name, tokens_of in ((n, tokens[n]) for n in forms):
        seq = np.concatenate([ids, tokens_of])
        with ember.no_grad():
            z = forms[name](seq[None, :-1]).numpy()[0, prompt - 1:].astype(np.float64)
        chosen = z[np.arange(new), tokens_of]
        assert (chosen >= z.max(axis=1) - 1e-4 * np.abs(z).max()).all(), f"{name}: not the forward's greedy tokens"

