"""Where a checkpoint's bytes go before the rename: beside the destination, never in the system's
temporary directory, so that saving onto another filesystem (a mounted volume, a tmpfs) works
and the rename stays atomic."""

import os
import pathlib
import tempfile

import numpy as np
import pytest

import ember
from ember import checkpoint, nn


def small_model(rng):
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    opt = ember.optim.Adam(model.parameters(), lr=1e-2)
    x = ember.tensor(rng.standard_normal((6, 5)).astype(np.float32))
    loss = nn.functional.cross_entropy(model(x), rng.integers(0, 3, 6))
    loss.backward()
    opt.step()
    return model, opt


def fd_path(fd):
    """The file an open descriptor refers to (Linux), or None where that cannot be told."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative"])
def test_the_temporary_file_is_written_beside_the_destination(rng, tmp_path, monkeypatch, relative):
    dest = tmp_path / "dest"
    elsewhere = tmp_path / "system-tmp"
    dest.mkdir()
    elsewhere.mkdir()
    # Point every notion of "the temporary directory" somewhere else.
    monkeypatch.setattr(tempfile, "tempdir", str(elsewhere))
    for var in ("TMPDIR", "TEMP", "TMP"):
        monkeypatch.setenv(var, str(elsewhere))
    seen = []
    real_fsync = os.fsync

    def spying_fsync(fd):
        seen.append({"path": fd_path(fd), "dest": sorted(os.listdir(dest)), "elsewhere": os.listdir(elsewhere),
                     "is_file": os.path.isfile(fd_path(fd) or "")})
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spying_fsync)
    model, opt = small_model(rng)
    if relative:
        monkeypatch.chdir(dest)
        target = pathlib.Path("model.safetensors")
    else:
        target = dest / "model.safetensors"
    ember.save(target, model, opt, epoch=3)
    model.save(dest / "weights.safetensors")
    assert seen, "a checkpoint is flushed to disk before it is renamed into place"
    for record in seen:
        assert record["elsewhere"] == [], "a temporary file was created in the system's temporary directory"
    # The flushes of regular files (not of the directory after the rename); an unnamed file
    # (O_TMPFILE) shows as "... (deleted)".
    data_syncs = [r for r in seen if r["is_file"] or (r["path"] or "").endswith(" (deleted)")]
    if seen[0]["path"] is not None:  # Linux: the file being flushed is the temporary one, in dest
        assert data_syncs, seen
        for record in data_syncs:
            assert pathlib.Path(record["path"].removesuffix(" (deleted)")).parent == dest.resolve(), record
            assert not record["path"].endswith(("model.safetensors", "weights.safetensors")), record
    else:  # elsewhere: at least the first flush saw a file in dest that is not the target yet
        assert seen[0]["dest"] and "model.safetensors" not in seen[0]["dest"], seen
    assert sorted(os.listdir(dest)) == ["model.safetensors", "weights.safetensors"]
    assert os.listdir(elsewhere) == []
    fresh, fresh_opt = small_model(rng)
    info = ember.load(dest / "model.safetensors", fresh, fresh_opt)
    assert info.epoch == 3
    for (k, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=k)


def other_filesystem():
    """A writable directory on another filesystem than the temporary directory, if there is one."""
    tmp_dev = os.stat(tempfile.gettempdir()).st_dev
    for candidate in ("/dev/shm", "/run/shm", os.path.expanduser("~")):
        try:
            if os.stat(candidate).st_dev != tmp_dev and os.access(candidate, os.W_OK):
                return candidate
        except OSError:
            continue
    return None


def test_saving_onto_another_filesystem(rng):
    where = other_filesystem()
    if where is None:
        pytest.skip("this machine has no second writable filesystem beside the temporary directory's")
    folder = tempfile.mkdtemp(prefix="ember-test-", dir=where)
    try:
        model, opt = small_model(rng)
        path = pathlib.Path(folder) / "m.safetensors"
        ember.save(path, model, opt, epoch=1)
        ember.save(path, model, opt, epoch=2)  # and over an existing file
        fresh, fresh_opt = small_model(rng)
        assert ember.load(path, fresh, fresh_opt).epoch == 2
        for (k, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items()):
            np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=k)
        assert os.listdir(folder) == ["m.safetensors"]
    finally:
        for name in os.listdir(folder):
            os.unlink(os.path.join(folder, name))
        os.rmdir(folder)


def test_a_missing_or_unwritable_folder_is_named_not_created(tmp_path):
    model = ember.nn.Linear(2, 2)
    target = tmp_path / "missing" / "m.safetensors"
    with pytest.raises(FileNotFoundError, match=f"cannot write {target}: the folder {target.parent} does not exist"):
        ember.save(target, model)
    assert not target.parent.exists()
    blocker = tmp_path / "file"
    blocker.write_text("")  # a file where the folder should be: the error names the path given
    with pytest.raises(OSError, match=f"cannot write {blocker / 'm.safetensors'}"):
        ember.save(blocker / "m.safetensors", model)


def test_a_batchnorm_model_saves_and_loads_with_its_0d_counter(tmp_path):
    """num_batches_tracked is a 0-d tensor: it must be stored 0-d (not as shape (1,)), or a
    model with BatchNorm could not load its own checkpoint."""
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    model(ember.randn(4, 1, 5, 5))
    path = model.save(tmp_path / "bn.safetensors")
    assert checkpoint.read_header(path)[0]["model.1.num_batches_tracked"] == ()
    again = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    again.load(path)
    assert int(again[1].num_batches_tracked.numpy()) == 1
    np.testing.assert_array_equal(again[1].running_var.numpy(), model[1].running_var.numpy())
