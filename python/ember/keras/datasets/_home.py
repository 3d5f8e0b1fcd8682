"""Where ``load_data`` looks for the files, and what it says when they are absent."""

from __future__ import annotations

import os
from pathlib import Path


def data_home() -> Path:
    """``$EMBER_DATA``, or ``~/.ember/datasets``."""
    return Path(os.environ.get("EMBER_DATA") or Path.home() / ".ember" / "datasets").expanduser()


def missing(name: str, folder: Path, files: str, archive: str, url: str, error: Exception,
            extract_to: Path | None = None) -> FileNotFoundError:
    """The error for a data set whose files are not in ``folder`` (where ``archive``, from
    ``url``, is to be extracted: ``extract_to``, default the folder itself)."""
    extract_to = folder if extract_to is None else extract_to
    where = (f"the folder {folder} does not exist" if not folder.exists()
             else f"{folder} does not hold them ({error})")
    tarball = next((p for p in (folder / archive, folder.parent / archive) if p.is_file()), None)
    hint = (f" {tarball} is there but not extracted: run  tar -xzf {tarball} -C {extract_to}" if tarball
            and archive.endswith(".tar.gz") else "")
    return FileNotFoundError(
        f"{name}: {files} not found: {where}.{hint} Download {archive} from {url} and unpack it into {extract_to}, "
        f"or set EMBER_DATA to the folder that holds it (nothing is downloaded by Ember)")
