"""Text shipped with ember, for character-level language models."""

from __future__ import annotations

import lzma
from importlib import resources


def shakespeare() -> str:
    """"Tiny Shakespeare": 1 115 394 characters (65 distinct) of dialogue from Shakespeare's plays
    (public domain), as compiled for char-rnn by Andrej Karpathy. Returns the whole text; a model
    typically trains on its first 90% and validates on the rest (``ember.gpt.CharTokenizer``
    turns it into token ids)."""
    with resources.files(__package__).joinpath("data", "tinyshakespeare.txt.xz").open("rb") as f:
        return lzma.decompress(f.read()).decode("utf-8")
