"""The error for a data set whose files are not where they were looked for."""

from __future__ import annotations

from pathlib import Path


def missing_files(name: str, folder: Path, wanted: str, archive: str, url: str, unpack_into: Path) -> FileNotFoundError:
    """Says whether ``folder`` is missing or lacks the files, whether the tarball ``archive`` lies
    there unextracted, and where the files come from (nothing is downloaded)."""
    if not folder.exists():
        where = f"the folder {folder} does not exist"
    elif not folder.is_dir():
        where = f"{folder} is not a folder"
    else:
        where = f"{folder} lacks {wanted}"
    if archive.endswith(".tar.gz"):
        tarball = next((p for p in (folder / archive, unpack_into / archive) if p.is_file()), None)
        hint = f" {tarball} is there but not extracted: run  tar -xzf {tarball} -C {unpack_into}." if tarball else ""
        source = f"Its files come from {archive} ({url}): unpack it into {unpack_into}"
    else:
        hint, source = "", f"Download {archive} from {url} into {unpack_into}"
    return FileNotFoundError(f"{name}: {where}.{hint} {source} (Ember downloads nothing)")
