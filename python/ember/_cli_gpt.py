"""``ember train --model gpt`` and ``ember generate``: a character-level GPT trained on a text
(Tiny Shakespeare, shipped with Ember, unless ``--text`` names a UTF-8 file), and text sampled
from its checkpoint."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

# What ``ember train --model gpt`` uses for each flag left out: about three minutes on 2 cores.
DEFAULTS = {"epochs": 4, "steps_per_epoch": 300, "batch_size": 32, "lr": 3e-3, "block_size": 64, "layers": 3,
            "heads": 4, "width": 128}
GPT_FLAGS = ("text", "steps_per_epoch", "block_size", "layers", "heads", "width")
VALIDATION = 0.1  # the last tenth of the text
SAMPLE = {"tokens": 300, "temperature": 0.8, "top_k": 20}


def _read_text(path) -> tuple[str, str]:
    """(name, text) of ``--text`` (default: the shipped Tiny Shakespeare)."""
    from . import datasets

    if path is None:
        return "shakespeare", datasets.shakespeare()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"--text {path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"--text {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ValueError(f"--text {path}: cannot be read ({exc.strerror})") from None
    return Path(path).name, text


def _option(args, name):
    value = getattr(args, name, None)
    return DEFAULTS[name] if value is None else value


def train(args, out) -> dict:
    """Train the GPT on the text's first 90%, validating on the rest after each epoch; save the
    best checkpoint (its config holds the tokenizer's characters) and print a sample of it."""
    import ember
    from . import models
    from ._cli_data import literal_checkpoint_path, output_path
    from .callbacks import LearningRateScheduler, ModelCheckpoint
    from .data import DataLoader, TextWindows
    from .gpt import CharTokenizer
    from .optim.lr_scheduler import WarmupCosineLR

    if args.data_dir is not None:
        raise ValueError("--data-dir is for image data sets; --model gpt trains on --text FILE (default: the "
                         "shipped Tiny Shakespeare)")
    name, text = _read_text(args.text)
    opts = {k: _option(args, k) for k in DEFAULTS}
    if opts["width"] % opts["heads"]:
        raise ValueError(f"--width {opts['width']} must be a multiple of --heads {opts['heads']}")
    block = opts["block_size"]
    split = int((1 - VALIDATION) * len(text))
    if len(text) - split < block + 1:
        raise ValueError(f"--text {args.text or name}: {len(text)} characters are too few; the last tenth must hold "
                         f"a window of --block-size {block} and its next character ({10 * (block + 1)} characters "
                         "at least)")
    tokenizer = CharTokenizer.from_text(text)
    if args.resume:
        from ._cli_data import file_config

        saved = file_config(args.resume)[0]
        if saved.get("model") != "gpt" or saved.get("chars") != tokenizer.chars:
            raise ValueError(f"--resume: {args.resume} does not hold a GPT trained on {name} (its config names model "
                             f"{saved.get('model')!r}, text {saved.get('text')!r})")
    ids = tokenizer.encode(text)
    ember.manual_seed(args.seed)
    model = models.gpt(tokenizer.vocab_size, block_size=block, n_layer=opts["layers"], n_head=opts["heads"],
                       d_model=opts["width"])
    decay = [p for p in model.parameters() if p.ndim == 2]  # weights decay; biases and norms do not
    rest = [p for p in model.parameters() if p.ndim != 2]
    optimizer = ember.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                                  lr=opts["lr"], betas=(0.9, 0.99))
    model.compile(optimizer=optimizer, loss="model", global_clipnorm=1.0)
    steps, epochs = opts["steps_per_epoch"], opts["epochs"]
    schedule = WarmupCosineLR(optimizer, warmup_steps=max(1, epochs * steps // 20), total_steps=epochs * steps)
    train_data = DataLoader(TextWindows(ids[:split], block), batch_size=opts["batch_size"], shuffle=True,
                            seed=args.seed)
    val_data = DataLoader(TextWindows(ids[split:], block, stride=block), batch_size=256)
    path = output_path(args.out, f"ember-{Path(name).stem}-gpt.safetensors", "--out", (args.text,))
    config = {"model": "gpt", "text": name, "chars": tokenizer.chars, "precision": args.precision,
              "options": {k: opts[k] for k in ("block_size", "layers", "heads", "width")}}
    checkpoint = ModelCheckpoint(literal_checkpoint_path(path), monitor="val_loss", config=config)
    params = sum(p.numel() for p in model.parameters())
    print(f"training gpt on {name}: {len(text)} characters ({tokenizer.vocab_size} distinct), {params / 1e6:.2f} M "
          f"parameters, {epochs} epochs of {steps} steps of {opts['batch_size']} x {block} tokens, precision "
          f"{args.precision}", file=out)
    start = time.perf_counter()
    history = model.fit(train_data, epochs=epochs, steps_per_epoch=steps, validation_data=val_data,
                        callbacks=[LearningRateScheduler(schedule, interval="batch"), checkpoint],
                        resume_from=args.resume, verbose=args.verbose, precision=args.precision)
    seconds = time.perf_counter() - start
    saved = checkpoint.last_saved
    val = history.history.get("val_loss", [])
    rate = float(np.mean(history.history.get("samples_per_s", [0.0]))) * block
    result = {"val_loss": float(min(val)) if val else float("nan"), "tokens_per_s": rate, "seconds": seconds,
              "checkpoint": saved, "interrupted": history.interrupted, "sample": None}
    print(f"validation loss {result['val_loss']:.4f} (nats per character) - training: {seconds:.1f} s, "
          f"{rate:.0f} tokens/s", file=out)
    if saved is not None:
        print(f"checkpoint: {saved.resolve()}", file=out)
        best = ember.load_model(saved)
        prompt = text[:block // 2]
        tokens = best.generate(tokenizer.encode(prompt), SAMPLE["tokens"], temperature=SAMPLE["temperature"],
                               top_k=SAMPLE["top_k"], generator=ember.Generator().manual_seed(args.seed))
        result["sample"] = tokenizer.decode(tokens)
        print(f"a sample (ember generate {saved} --prompt ...):\n{result['sample']}", file=out)
    if history.interrupted:
        print("training was interrupted; continue with --resume " + str(saved or path), file=out)
    return result


EVAL_WINDOWS = 128  # validation windows a quantized GPT is scored on


def validation_windows(text_arg, config, path):
    """(inputs, next tokens) of the first EVAL_WINDOWS windows of the validation text (the last
    tenth) of the text a GPT checkpoint was trained on: ``--text FILE`` or, by default, the
    shipped text when its config names it."""
    from .data import TextWindows
    from .gpt import CharTokenizer

    if text_arg is None and config.get("text") != "shakespeare":
        raise ValueError(f"{path} was trained on {config.get('text')!r}: pass --text FILE to score it")
    name, text = _read_text(text_arg)
    block = config.get("options", {}).get("block_size")
    split = int((1 - VALIDATION) * len(text))
    if not isinstance(block, int) or len(text) - split < block + 1:
        raise ValueError(f"--text {text_arg or name}: too short for windows of the checkpoint's {block} tokens")
    try:
        ids = CharTokenizer(config["chars"]).encode(text[split:])
    except ValueError as exc:
        raise ValueError(f"--text {text_arg or name}: {exc} of {path}") from None
    windows = TextWindows(ids, block, stride=block)
    return windows.get_batch(np.arange(min(len(windows), EVAL_WINDOWS)))


def generate(args, out) -> dict:
    """``ember generate CHECKPOINT``: continue ``--prompt`` with ``--tokens`` sampled characters
    (``--bits 4`` or ``8`` quantizes the model's matrices for it first; ``--codebook`` with
    ``--bits 4`` in the codebook format)."""
    import ember
    from ._cli_data import file_config
    from .gpt import GPT, CharTokenizer

    config = file_config(args.path)[0]
    chars = config.get("chars")
    if config.get("model") != "gpt" or not isinstance(chars, str):
        raise ValueError(f"{args.path}: not a GPT checkpoint of ember train --model gpt (its config names no "
                         "tokenizer characters)")
    tokenizer = CharTokenizer(chars)
    model = ember.load_model(args.path)
    if not isinstance(model, GPT):
        raise ValueError(f"{args.path}: holds a {type(model).__name__}, not a GPT")
    if args.codebook and args.bits != 4:
        raise ValueError("--codebook: an int4 format, for --bits 4")
    if args.bits is not None:
        model, _ = ember.quant.quantize(model, bits=args.bits, codebook=args.codebook)
    prompt = args.prompt if args.prompt is not None else "\n"
    if not prompt:
        raise ValueError("--prompt: give at least one character")
    try:
        ids = tokenizer.encode(prompt)
    except ValueError as exc:
        raise ValueError(f"--prompt: {exc} of {args.path} ({len(chars)} characters)") from None
    start = time.perf_counter()
    tokens = model.generate(ids, args.tokens, temperature=args.temperature, top_k=args.top_k,
                            generator=ember.Generator().manual_seed(args.seed))
    seconds = time.perf_counter() - start
    text = tokenizer.decode(tokens)
    print(text, file=out)
    rate = args.tokens / seconds if seconds > 0 else float("inf")
    print(f"({args.tokens} characters in {seconds:.2f} s: {rate:.0f} per second)", file=out)
    return {"text": text, "tokens_per_s": rate}
