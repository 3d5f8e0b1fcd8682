"""Checkpoints: a model's weights, its optimizer's state, the epoch, the random state and a small
JSON config in one safetensors file -- no pickle, so loading a file never runs code.

Layout: arrays are stored under ``model.<state_dict key>`` (parameters as F32, or as BF16 when
saved with ``dtype='bf16'``) and
``optimizer.<parameter index>.<state name>``; everything else is JSON in the file's metadata
(``ember.format``, ``ember.architecture`` (what rebuilds the model: ``ember.nn.describe``, or
why nothing can), ``ember.precision`` (the policy it was saved under), ``ember.epoch``, ``ember.config``, ``ember.optimizer`` (class, parameter
groups and the scalar state, such as Adam's step), ``ember.rng`` (the default generator's
state), ``ember.extra`` and, for a quantized model, ``ember.quant``: the packed layout's version
and each quantized layer's bits and group size).

Writes are atomic: the file is written beside its destination under a temporary name, flushed
to disk and renamed over it, so a crash mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import math
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import backend, precision
from .kernels._common import bfloat16
from .kernels.gemm import convert_bf16
from .nn import Module, architecture
from .factories import default_generator

FORMAT = "ember-checkpoint-1"
_MODEL = "model."
_OPTIM = "optimizer."


@dataclass
class Checkpoint:
    """What ``load`` found besides the arrays it copied into the model and optimizer."""

    path: Path
    epoch: int | None = None
    config: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    model_state: dict = field(default_factory=dict)  # key -> array, on load's map_location
    precision: dict = field(default_factory=dict)  # the policy it was saved under (ember.precision)

    def __repr__(self) -> str:
        """A summary: the arrays' count and size, not their values."""
        arrays = self.model_state.values()
        nbytes = sum(int(a.nbytes) for a in arrays)
        return (f"Checkpoint(path={str(self.path)!r}, epoch={self.epoch}, config keys={sorted(self.config)}, "
                f"extra keys={sorted(self.extra)}, model_state={len(self.model_state)} arrays, "
                f"{sum(int(a.size) for a in arrays):,} values, {nbytes / 2**20:.1f} MiB)")


def _safetensors():
    try:
        import safetensors.numpy as st
    except ImportError as exc:  # a dependency; reached only in a broken installation
        raise ImportError("checkpoints need the 'safetensors' package: pip install safetensors") from exc
    return st


def _host(value) -> np.ndarray:
    """A tensor's or an array's values as a C-contiguous host array of the same shape (copied
    from a device; a 0-d value stays 0-d, where ``np.ascontiguousarray`` would make it 1-d)."""
    a = value._data if hasattr(value, "_data") else value
    return np.asarray(backend.device_of(a).to_host(a), order="C")


def _json_ready(value):
    """Tuples become lists, NumPy scalars Python numbers; anything else JSON cannot hold is an error."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store a {type(value).__name__} in a checkpoint's JSON metadata")


_TMP_MARK = ".ember-tmp-"


def _clean_stale_temps(directory: Path, name: str) -> None:
    """Remove temporary files a killed save of ``name`` left in ``directory``: those named
    ``.NAME.ember-tmp-PID-*`` whose process no longer runs."""
    prefix = f".{name}{_TMP_MARK}"
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        pid = entry.name[len(prefix):].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # its writer is alive (another process saving the same file)
        except ProcessLookupError:
            pass
        except OSError:  # alive but not ours to signal
            continue
        try:
            os.unlink(entry.path)
        except OSError:
            pass


def atomic_write(path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the whole new one.

    The bytes go to a temporary file beside the destination (named ``.NAME.ember-tmp-PID-*``, so
    that one a killed process left behind is recognised and removed by the next save), are
    flushed to disk and renamed over it. A symbolic link is written through: its target is
    replaced, the link stays. An existing file keeps its permission bits; a new one gets the
    umask's."""
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        if directory.exists():
            raise NotADirectoryError(f"cannot write {path}: {directory} is not a folder")
        raise FileNotFoundError(f"cannot write {path}: the folder {directory} does not exist")
    _clean_stale_temps(directory, path.name)
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        mode = None
    for _ in range(100):
        tmp = directory / f".{path.name}{_TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
            break
        except FileExistsError:
            continue
        except OSError as exc:  # name what the caller asked for, not the temporary file
            raise type(exc)(exc.errno, f"cannot write {path}: {exc.strerror} (in {directory})") from None
    else:
        raise FileExistsError(f"could not create a temporary file beside {path}")
    try:
        with os.fdopen(fd, "wb") as f:
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


# Metadata sections that other parts of Ember add to checkpoints: key -> (describe, check).
# ``describe(model)`` returns the section's JSON text for a model (None: no section);
# ``check(path, model, text)`` raises ValueError when a file's section (text, or None when the
# file has none) does not fit the model. Quantization registers "ember.quant" this way, so this
# module needs to know nothing of quantized layers.
_SECTIONS: dict = {}


def register_section(key: str, describe, check) -> None:
    """Have every save write ``describe(model)`` under ``key`` and every load run ``check``."""
    _SECTIONS[key] = (describe, check)


def _optimizer_parts(optimizer):
    """(arrays by key, JSON-ready description) of an optimizer's state_dict."""
    sd = optimizer.state_dict()
    arrays, scalars = {}, {}
    for index, state in sd["state"].items():
        for name, value in state.items():
            if hasattr(value, "_data") or backend.is_array(value):  # a Tensor or an array of any device
                arrays[f"{_OPTIM}{index}.{name}"] = _host(value)
            else:
                scalars.setdefault(str(index), {})[name] = _json_ready(value)
    groups = [_json_ready(g) for g in sd["param_groups"]]
    return arrays, {"class": type(optimizer).__name__, "param_groups": groups, "scalars": scalars}


_ARCHITECTURE = "ember.architecture"


def _architecture(model) -> dict:
    """What rebuilds ``model`` (``ember.nn.describe``), or why nothing can."""
    try:
        return architecture.describe(model)
    except TypeError as exc:
        return {"unavailable": str(exc)}


def _weights_dtype(dtype, optimizer):
    """Whether ``save``'s ``dtype`` asks for bf16 weights (None, 'fp32'/'float32' do not)."""
    if dtype in (None, "fp32", "float32"):
        return False
    if dtype not in ("bf16", "bfloat16"):
        raise ValueError(f"save: dtype must be None, 'fp32' or 'bf16', got {dtype!r}")
    if optimizer is not None:
        raise ValueError("save: dtype='bf16' stores weights for inference; a checkpoint with optimizer state "
                         "keeps float32 weights, which resuming training needs")
    return True


def _unwrapped(model):
    """The model inside a wrapper that forwards to it (``DistributedDataParallel``): checkpoints
    hold the wrapped model's weights and architecture, so they load with or without the wrapper."""
    return getattr(model, "wrapped_module", model) if model is not None else None


def save(path, model=None, optimizer=None, *, epoch: int | None = None, config: dict | None = None,
         extra: dict | None = None, include_rng: bool = True, dtype: str | None = None) -> Path:
    """Save a checkpoint to ``path`` (a ``.safetensors`` file) atomically and return its path.

    ``model``'s ``state_dict`` and ``optimizer``'s state go in as arrays; ``epoch`` (epochs
    completed), ``config`` (for example what built the model) and ``extra`` (anything JSON can
    hold) as metadata, with the default random generator's state unless ``include_rng=False``.

    ``dtype='bf16'`` stores the model's float32 parameters as bf16 (safetensors' BF16, rounded to
    nearest even): half the bytes, for deploying a model. Buffers (normalisation statistics,
    quantized weights and their scales) keep their dtype, and loading widens the weights back
    into the model's float32 exactly. A checkpoint with optimizer state cannot be bf16.
    """
    st = _safetensors()
    to_bf16 = _weights_dtype(dtype, optimizer)
    model = _unwrapped(model)
    tensors = {}
    if model is not None:
        parameters = {k for k, _ in model.named_parameters()} if to_bf16 else set()
        for key, value in model.state_dict().items():
            array = _host(value)
            if key in parameters and array.dtype == np.float32:
                array = convert_bf16(array)
            tensors[_MODEL + key] = array
    meta = {"ember.format": FORMAT}
    if model is not None:
        meta[_ARCHITECTURE] = json.dumps(_architecture(model))
        for key, (describe, _) in _SECTIONS.items():
            text = describe(model)
            if text is not None:
                meta[key] = text
    if optimizer is not None:
        arrays, description = _optimizer_parts(optimizer)
        tensors.update(arrays)
        meta["ember.optimizer"] = json.dumps(description)
    if epoch is not None:
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"save: epoch must be an int >= 0, got {epoch!r}")
        meta["ember.epoch"] = str(int(epoch))
    meta["ember.precision"] = json.dumps(precision.current().describe())
    meta["ember.config"] = json.dumps(_json_ready(config or {}))
    meta["ember.extra"] = json.dumps(_json_ready(extra or {}))
    if include_rng:
        meta["ember.rng"] = json.dumps(default_generator().numpy.bit_generator.state)
    path = Path(path)
    atomic_write(path, st.save(tensors, metadata=meta))
    return path


def _open(path, take) -> tuple[dict, dict]:
    """``({key: take(file, key)}, metadata)`` of the Ember checkpoint at path: a missing file,
    a damaged one or another format raises naming the file."""
    st = _safetensors()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with st.safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            entries = {k: take(f, k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise ValueError(f"{path} is not a readable safetensors file ({exc})") from exc
    if meta.get("ember.format") != FORMAT:
        raise ValueError(f"{path} is not an Ember checkpoint (format {meta.get('ember.format')!r}, "
                         f"expected {FORMAT!r})")
    return entries, meta


# Bytes per value of safetensors' dtypes (unknown ones count as the widest).
_ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
             "I32": 4, "U32": 4, "F32": 4}


def read_header(path) -> tuple[dict, dict, int]:
    """``({key: shape}, metadata, bytes of the model's tensors)`` of an Ember checkpoint without
    reading its tensors' data, so that what a file claims can be checked before anything is
    allocated for it."""
    def take(f, k):
        view = f.get_slice(k)
        return tuple(view.get_shape()), view.get_dtype()

    entries, meta = _open(path, take)
    nbytes = sum(math.prod(shape) * _ITEMSIZE.get(dtype, 8) for k, (shape, dtype) in entries.items()
                 if k.startswith(_MODEL))
    return {k: shape for k, (shape, _) in entries.items()}, meta, nbytes


def rebuild_limit(stored_bytes: int) -> int:
    """What rebuilding a model may allocate for a file whose model tensors take ``stored_bytes``:
    eight times that (the float layers a quantized model's own constructor may make before its
    quantized ones replace them, int4 being an eighth of float32) and 64 MiB."""
    return 8 * stored_bytes + 64 * 2**20


def load_model(path, map_location=None):
    """The model a checkpoint holds, made again from the architecture it records (see
    ``ember.nn.describe``) and loaded with its weights, in eval mode, on ``map_location`` (a
    device or its name; default the CPU).

    The file names only registered classes (Ember's layers; a model's own ``Module`` subclass
    once its module, decorated with ``@ember.nn.register``, is imported), and rebuilding may not
    allocate more than the file backs (``rebuild_limit``): an edited description is a ValueError
    naming the file and the sub-module, never arbitrary code or gigabytes allocated."""
    path = Path(path)
    _, meta, nbytes = read_header(path)
    text = meta.get(_ARCHITECTURE)
    if text is None:
        raise ValueError(f"{path} does not record its model's architecture: build the model in code and load "
                         f"the weights with model.load({str(path)!r})")
    try:
        description = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{path}: metadata {_ARCHITECTURE} is not JSON ({exc})") from None
    if isinstance(description, dict) and set(description) == {"unavailable"}:
        raise ValueError(f"{path} does not record its model's architecture: {description['unavailable']}")
    try:
        model = architecture.rebuild(description, max_bytes=rebuild_limit(nbytes),
                                     source=f"the architecture {path} records")
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    if map_location is not None:
        model.to(map_location)
    load(path, model, restore_rng=False)
    return model.eval()


def read(path) -> tuple[dict, dict]:
    """The arrays and the metadata of an Ember checkpoint, checked to be one (bf16 weights as
    ``ml_dtypes.bfloat16`` arrays)."""
    def take(f, k):
        if f.get_slice(k).get_dtype() == "BF16":
            bfloat16()  # safetensors finds NumPy's bf16 dtype by name once ml_dtypes registered it
        return f.get_tensor(k)

    return _open(path, take)


def _json_meta(meta, key, kind, default):
    if key not in meta:
        return default
    value = json.loads(meta[key])
    if not isinstance(value, kind):
        raise ValueError(f"metadata {key} must hold a JSON {kind.__name__}, got {type(value).__name__}")
    return value


def saved_epoch(meta):
    """The epochs a checkpoint's metadata says were done (None when it does not say)."""
    if "ember.epoch" not in meta:
        return None
    text = meta["ember.epoch"]
    if not text.isdigit():
        raise ValueError(f"metadata ember.epoch must be an int >= 0, got {text!r}")
    return int(text)


def _optimizer_state(arrays, meta, optimizer):
    """The optimizer's state_dict as stored, checked by the optimizer; nothing is applied."""
    if "ember.optimizer" not in meta:
        raise ValueError("holds no optimizer state")
    description = _json_meta(meta, "ember.optimizer", dict, {})
    # a subclass keeps its base's state (the Keras optimizers over Ember's, say): a base's state loads
    if description.get("class") not in {c.__name__ for c in type(optimizer).__mro__}:
        raise ValueError(f"holds the state of a {description.get('class')} optimizer, "
                         f"not of a {type(optimizer).__name__}")
    groups, scalars = description.get("param_groups"), description.get("scalars", {})
    if not isinstance(groups, list) or not isinstance(scalars, dict):
        raise ValueError("metadata ember.optimizer must hold 'param_groups' (a list) and 'scalars' (a dict)")
    state = {}
    for key, value in arrays.items():
        if key.startswith(_OPTIM):
            index, _, name = key[len(_OPTIM):].partition(".")
            if not index.isdigit() or not name:
                raise ValueError(f"tensor {key!r} is not named optimizer.<parameter index>.<state name>")
            state.setdefault(int(index), {})[name] = value
    for index, entries in scalars.items():
        if not index.isdigit() or not isinstance(entries, dict):
            raise ValueError(f"metadata ember.optimizer: scalars[{index!r}] is not a parameter's state")
        state.setdefault(int(index), {}).update(entries)
    return optimizer.check_state_dict({"state": state, "param_groups": groups})


def checked_rng_state(state, what: str):
    """``state``, checked on a scratch generator of the default one's kind: a ValueError naming
    ``what`` unless the default generator can take it."""
    scratch = type(default_generator().numpy.bit_generator)()
    try:
        scratch.state = state
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"{what} is not a valid random state ({exc})") from None
    return state


def _rng_state(meta):
    """The stored random state, checked."""
    state = _json_meta(meta, "ember.rng", dict, None)
    return None if state is None else checked_rng_state(state, "metadata ember.rng")


def load(path, model=None, optimizer=None, *, strict: bool = True, restore_rng: bool = True,
         map_location=None) -> Checkpoint:
    """Load a checkpoint written by ``save``: weights into ``model`` (a key the model lacks or
    lacks in the file, or a shape that differs, is an error listing them all; with
    ``strict=False`` only shapes must agree), state into ``optimizer``, and, unless
    ``restore_rng=False``, the default random generator's state. Returns a ``Checkpoint``
    with the epoch, config and extra metadata, and the stored weights as ``model_state``.

    Files hold host arrays, so a checkpoint saved on any device loads on any other: weights go
    to the device of the model's tensors, optimizer state to its parameters' device, and
    ``model_state`` to ``map_location`` (a device or its name; None keeps the NumPy arrays
    as read).

    The whole file is checked first -- tensors, shapes and dtypes, the optimizer's state and
    hyper-parameters, the random state, the epoch and config -- and the model, optimizer and
    random state change only when all of it is right: an error (ValueError naming the file
    and the key) leaves them as they were."""
    path = Path(path)
    model = _unwrapped(model)
    target = backend.get(map_location) if map_location is not None else None
    arrays, meta = read(path)
    model_state = {k[len(_MODEL):]: v for k, v in arrays.items() if k.startswith(_MODEL)}
    try:
        epoch = saved_epoch(meta)
        config = _json_meta(meta, "ember.config", dict, {})
        extra = _json_meta(meta, "ember.extra", dict, {})
        policy = _json_meta(meta, "ember.precision", dict, {})
        plan = None
        if model is not None:
            for key, (_, check) in _SECTIONS.items():
                check(path, model, meta.get(key))
            plan = model.plan_load_state_dict(model_state, strict=strict)[0]
        optimizer_state = _optimizer_state(arrays, meta, optimizer) if optimizer is not None else None
        rng = _rng_state(meta) if restore_rng else None
    except (TypeError, ValueError, KeyError) as exc:
        message = str(exc)
        raise ValueError(message if message.startswith(str(path)) else f"{path}: {message}") from None
    # Everything is checked: apply it.
    if plan is not None:
        model._apply_load_plan(plan)
    if optimizer_state is not None:
        optimizer._install_state(optimizer_state)
    if rng is not None:
        default_generator().numpy.bit_generator.state = rng
    if target is not None:
        model_state = {k: target.asarray(v) for k, v in model_state.items()}
    return Checkpoint(path=path, epoch=epoch, config=config, extra=extra, model_state=model_state, precision=policy)


def _install_module_methods(cls) -> None:
    """Give ``nn.Module`` ``save`` and ``load`` (the layer below checkpoints does not import
    this module; it adds them when Ember is imported)."""

    def save_(self, path, config=None, dtype=None):
        """Save the weights (and an optional JSON ``config``) to a safetensors checkpoint;
        ``dtype='bf16'`` stores the parameters as bf16 (see ``ember.checkpoint.save``)."""
        return save(path, self, config=config, include_rng=False, dtype=dtype)

    def load_(self, path, strict: bool = True):
        """Load weights saved by ``save`` or ``ModelCheckpoint``; returns the ``Checkpoint``."""
        return load(path, self, strict=strict, restore_rng=False)

    for name, method in (("save", save_), ("load", load_)):
        method.__name__ = method.__qualname__ = name
        setattr(cls, name, method)


_install_module_methods(Module)
