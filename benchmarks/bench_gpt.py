"""One training step of a GPT (6 layers, width 384, 6 heads, context 256, batch 16, the 65
characters of Tiny Shakespeare) in Ember -- ``compute_loss`` through the fused head, backward,
AdamW -- against the same model in PyTorch eager on the CPU (nn.TransformerEncoderLayer blocks,
its fused scaled-dot-product attention, AdamW), alternating in rounds of one run. ``extra_info``
holds both medians and the median of the rounds' ratios (PyTorch / Ember; above 1 means Ember
is faster); ``-s`` prints them.

    python -m pytest benchmarks/bench_gpt.py --benchmark-only -s

As a test (``--benchmark-disable``) a tiny model takes one step in each and the losses agree.
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


@pytest.mark.parametrize("threads", THREADS, ids=lambda t: f"{t}t")
def bench_gpt_training_step(benchmark, threads):
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

    def ember_step():
        opt_e.zero_grad()
        loss = ours.compute_loss(x, y)
        loss.backward()
        opt_e.step()
        losses.setdefault("ember", loss.item())

    def torch_step():
        opt_t.zero_grad()
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
              f"{threads} thread(s): Ember {figures['ember_ms']:.0f} ms, PyTorch {figures['torch_ms']:.0f} ms, "
              f"PyTorch / Ember {ratio:.2f}")

    benchmark.group = "GPT training step"
    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(figures, threads=threads, cpu=machine.cpu_model())
    assert abs(losses["ember"] - losses["torch"]) < 1e-4 * max(1.0, abs(losses["torch"]))
