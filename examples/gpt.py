"""A character-level GPT trained on Tiny Shakespeare (shipped with Ember), then sampled.

AdamW with weight decay, a linear warmup then a cosine decay of the learning rate (set before
every step by a callback), gradient clipping at norm 1, and the fused linear + cross-entropy
head (``compile(loss="model")``), all through ``fit``; validation on the last 10% of the text.
Then ``generate`` writes a few hundred characters with the key/value cache.

    python examples/gpt.py                 # the defaults: a few minutes on 2 cores
    python examples/gpt.py --steps 5000 --layers 6 --width 384 --heads 6 --block-size 256   # bigger
"""

import argparse
import math
import time

import numpy as np

import ember
from ember import datasets, models
from ember.callbacks import Callback
from ember.data import DataLoader, Dataset
from ember.gpt import CharTokenizer


class Windows(Dataset):
    """``count`` windows of ``length`` + 1 tokens at random places of ``ids``, fixed by ``seed``:
    each sample is (window[:-1], window[1:])."""

    def __init__(self, ids, length, count, seed):
        self.ids, self.length = ids, length
        self.starts = np.random.default_rng(seed).integers(0, len(ids) - length - 1, count)

    def __len__(self):
        return len(self.starts)

    def __getitem__(self, i):
        w = self.ids[self.starts[i]:self.starts[i] + self.length + 1]
        return w[:-1], w[1:]

    def get_batch(self, indices):
        w = self.ids[self.starts[indices][:, None] + np.arange(self.length + 1)]
        return w[:, :-1], w[:, 1:]


class WarmupCosine(Callback):
    """The learning rate of step s: ``peak`` * s / ``warmup`` for the first steps, then a cosine
    from ``peak`` down to ``peak`` / 10 at step ``total``."""

    def __init__(self, peak, warmup, total):
        super().__init__()
        self.peak, self.warmup, self.total, self.step = peak, warmup, total, 0

    def on_train_batch_begin(self, batch, logs=None):
        s = self.step
        if s < self.warmup:
            lr = self.peak * (s + 1) / self.warmup
        else:
            done = min(1.0, (s - self.warmup) / max(1, self.total - self.warmup))
            lr = self.peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * done)))
        for group in self.params["optimizer"].param_groups:
            group["lr"] = lr
        self.step += 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--block-size", type=int, default=64)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prompt", default="ROMEO:\n")
    parser.add_argument("--out", default="gpt.safetensors")
    args = parser.parse_args()

    text = datasets.shakespeare()
    tokenizer = CharTokenizer.from_text(text)
    ids = tokenizer.encode(text)
    split = int(0.9 * len(ids))
    train = Windows(ids[:split], args.block_size, args.steps * args.batch_size, args.seed)
    val = Windows(ids[split:], args.block_size, 2048, args.seed + 1)

    ember.manual_seed(args.seed)
    model = models.gpt(tokenizer.vocab_size, block_size=args.block_size, n_layer=args.layers, n_head=args.heads,
                       d_model=args.width)
    decay = [p for n, p in model.named_parameters() if p.ndim == 2]  # weights decay; biases and norms do not
    rest = [p for n, p in model.named_parameters() if p.ndim != 2]
    optimizer = ember.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                                  lr=args.lr, betas=(0.9, 0.99))
    model.compile(optimizer=optimizer, loss="model", clipnorm=1.0)
    print(f"{sum(p.size for p in model.parameters()) / 1e6:.2f} M parameters, {args.steps} steps of "
          f"{args.batch_size} x {args.block_size} tokens")
    start = time.perf_counter()
    model.fit(DataLoader(train, batch_size=args.batch_size), epochs=1, verbose=2,
              validation_data=DataLoader(val, batch_size=256),
              callbacks=[WarmupCosine(args.lr, args.steps // 20, args.steps)])
    print(f"trained in {time.perf_counter() - start:.0f} s")
    ember.save(args.out, model)

    sample = model.generate(tokenizer.encode(args.prompt), 400, temperature=0.8, top_k=20,
                            generator=ember.Generator().manual_seed(args.seed))
    print(tokenizer.decode(sample))


if __name__ == "__main__":
    main()
