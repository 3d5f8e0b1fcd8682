"""Checkpoint files edited the way a damaged or tampered file would be."""

import safetensors.numpy as st

from ember import checkpoint


def rewritten(src, dst, edit_meta=None, edit_arrays=None):
    """A copy of checkpoint ``src`` at ``dst`` after ``edit_meta(metadata)`` and
    ``edit_arrays(arrays)`` changed it in place (either may be None)."""
    arrays, meta = checkpoint.read(src)
    if edit_meta:
        edit_meta(meta)
    if edit_arrays:
        edit_arrays(arrays)
    st.save_file(arrays, str(dst), metadata=meta)
    return dst
