"""A character-level GPT trained on Tiny Shakespeare (shipped with Ember), then sampled.

AdamW with weight decay, a linear warmup then a cosine decay of the learning rate (set before
every step), gradient clipping at norm 1, and the fused linear + cross-entropy head
(``compile(loss="model")``), all through ``fit``, on random windows of the first 90% of the
text; validation on the rest. Then ``generate`` writes a few hundred characters with the
key/value cache. (``ember train --model gpt`` runs the same recipe from the command line.)

    python examples/gpt.py                 # the defaults: a few minutes on 2 cores
    python examples/gpt.py --steps 5000 --layers 6 --width 384 --heads 6 --block-size 256   # bigger
"""

import argparse
import time

import ember
from ember import datasets, models
from ember.callbacks import LearningRateScheduler
from ember.data import DataLoader, TextWindows
from ember.gpt import CharTokenizer
from ember.optim.lr_scheduler import WarmupCosineLR


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
    train = DataLoader(TextWindows(ids[:split], args.block_size), batch_size=args.batch_size, shuffle=True,
                       seed=args.seed)  # every window of the text, in a new random order each epoch
    val = DataLoader(TextWindows(ids[split:], args.block_size, stride=args.block_size), batch_size=256)

    ember.manual_seed(args.seed)
    model = models.gpt(tokenizer.vocab_size, block_size=args.block_size, n_layer=args.layers, n_head=args.heads,
                       d_model=args.width)
    decay = [p for n, p in model.named_parameters() if p.ndim == 2]  # weights decay; biases and norms do not
    rest = [p for n, p in model.named_parameters() if p.ndim != 2]
    optimizer = ember.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                                  lr=args.lr, betas=(0.9, 0.99))
    model.compile(optimizer=optimizer, loss="model", global_clipnorm=1.0)
    print(f"{sum(p.size for p in model.parameters()) / 1e6:.2f} M parameters, {args.steps} steps of "
          f"{args.batch_size} x {args.block_size} tokens")
    start = time.perf_counter()
    schedule = WarmupCosineLR(optimizer, warmup_steps=args.steps // 20, total_steps=args.steps)
    model.fit(train, epochs=1, steps_per_epoch=args.steps, verbose=2, validation_data=val,
              callbacks=[LearningRateScheduler(schedule, interval="batch")])
    print(f"trained in {time.perf_counter() - start:.0f} s")
    ember.save(args.out, model)

    sample = model.generate(tokenizer.encode(args.prompt), 400, temperature=0.8, top_k=20,
                            generator=ember.Generator().manual_seed(args.seed))
    print(tokenizer.decode(sample))


if __name__ == "__main__":
    main()
