"""Where ``load_data`` looks for the files."""

from __future__ import annotations

import os
from pathlib import Path


def data_home() -> Path:
    """``$EMBER_DATA``, or ``~/.ember/datasets``."""
    return Path(os.environ.get("EMBER_DATA") or Path.home() / ".ember" / "datasets").expanduser()


def read(loader, folder: Path):
    """``loader(folder)``, a missing file's error saying how to move the folder."""
    try:
        return loader(folder)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{e}. ember.keras.datasets reads {folder} ($EMBER_DATA, default "
                                "~/.ember/datasets): set EMBER_DATA to read another folder") from None
