"""Pruning: structured (whole channels removed, a genuinely smaller dense model) and
unstructured (single weights zeroed and kept at zero by masks; no faster, and it says so).

Structured pruning follows the model's data flow along an ``nn.Sequential`` chain (nested ones
included; a Sequential subclass with its own ``forward`` is not a chain but one layer it cannot
follow): each Conv2d (groups=1) or Linear whose output reaches another Conv2d or Linear
through layers that act per channel -- BatchNorm, activations, Dropout, pooling, Flatten -- loses
the output channels that score lowest; the BatchNorm between loses the same channels, and the
consumer loses the matching inputs (after a Flatten, the block of H*W features each channel
became). The last such layer (the model's output) is never pruned, and a layer whose output
passes anything else (a LayerNorm, a depthwise convolution, a layer this module does not know)
is left alone, as is one whose consumer does not take its channels as features on the same
axis: a Conv2d feeding a Linear without a Flatten (the Linear acts on the width), a Linear
feeding a Flatten, pooling or a Conv2d (its features are the last axis, not the channels); all
are listed in the result's ``skipped``.
"""

from __future__ import annotations

import copy

import numpy as np

from .. import backend, nn
from ..autograd import no_grad
from ..nn.module import Parameter
from ..tensor import Tensor

CRITERIA = ("l1", "l2", "bn_scale")
# Layers that act on each channel alone: a channel removed before them is removed after them.
_PER_CHANNEL = (nn.ReLU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.LeakyReLU, nn.Dropout, nn.Identity,
                nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)


class PruneResult:
    """What ``prune`` did: per pruned layer the channels kept (``kept[name]``, indices into the
    original's) out of how many (``total``), the layers left alone with the reason
    (``skipped``); for unstructured pruning each layer's fraction of zero weights
    (``sparsity``); ``report``, the side-by-side ``CompressionReport`` when ``prune`` was given
    evaluation data; and ``moves``, (old parameter, new parameter, cut) in the order they were
    made, which ``PruningCallback`` uses to carry an optimizer's state over."""

    def __init__(self):
        self.kept: dict = {}
        self.total: dict = {}
        self.skipped: dict = {}
        self.sparsity: dict = {}
        self.report = None
        self.moves: list = []

    def __str__(self) -> str:
        lines = [f"pruned {name}: {len(keep)} of {self.total[name]} channels kept" for name, keep in self.kept.items()]
        lines += [f"left {name} alone: {why}" for name, why in self.skipped.items()]
        lines += [f"{name}: {100 * v:.1f}% of the weights zero (masked)" for name, v in self.sparsity.items()]
        if self.sparsity:
            lines.append("unstructured sparsity keeps every layer's shape: the dense kernels run as fast as before")
        if self.report is not None:
            lines.append(str(self.report))
        return "\n".join(lines) or "nothing to prune"


def is_chain(module) -> bool:
    """Whether ``module`` computes nothing but its children in order: an ``nn.Sequential`` (or a
    subclass) that keeps Sequential's own forward. A subclass with its own forward (a residual
    block, say) computes something else, so it is not read as a chain of its children."""
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


def _chain(module, prefix=""):
    """The leaf layers of a (nested) Sequential in the order they run: (parent, name, qualified
    name, layer); a Sequential with its own forward is one layer, which pruning cannot follow."""
    if not is_chain(module):
        raise ValueError(f"prune: structured pruning follows nn.Sequential models; {prefix or 'the model'} is a "
                         f"{type(module).__name__} with its own forward (prune its Sequential parts, or use "
                         "structured=False)")
    out = []
    for name, child in module.named_children():
        qual = f"{prefix}.{name}" if prefix else name
        if is_chain(child):
            out += _chain(child, qual)
        else:
            out.append((module, name, qual, child))
    return out


def _producer(m) -> bool:
    return isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1)


def _plain_flatten(m) -> bool:
    return isinstance(m, nn.Flatten) and m.start_dim == 1 and m.end_dim == -1


def _plan(chain):
    """For each prunable producer: (index, norms between, flatten index or None, consumer index);
    and the reasons the others are left alone."""
    groups, skipped = [], {}
    for i, (_, _, qual, m) in enumerate(chain):
        if not _producer(m):
            if isinstance(m, nn.Conv2d):
                skipped[qual] = f"a grouped convolution (groups={m.groups}) keeps its channels in step with its input"
            continue
        linear = isinstance(m, nn.Linear)
        norms, flat, reason = [], None, None
        j = i + 1
        while j < len(chain) and reason is None:
            c = chain[j][3]
            if _producer(c):
                break
            if isinstance(c, _NORMS) and flat is not None:
                reason = f"{chain[j][2]} ({type(c).__name__}) after the Flatten normalizes features, not its channels"
            elif isinstance(c, _NORMS):
                norms.append(j)
            elif _plain_flatten(c) and flat is None:
                flat = j
            elif linear and isinstance(c, _POOLS):
                reason = (f"{chain[j][2]} ({type(c).__name__}) pools over the last two axes, and a Linear's "
                          "features are the last")
            elif not isinstance(c, _PER_CHANNEL):
                reason = f"its output goes through {chain[j][2]} ({type(c).__name__}), which pruning cannot follow"
            j += 1
        consumer = chain[j][3] if j < len(chain) else None
        if reason is None and consumer is None:
            reason = "it makes the model's output"
        elif reason is None and isinstance(consumer, nn.Conv2d) and flat is not None:
            reason = f"a Flatten lies between it and the convolution {chain[j][2]}"
        elif reason is None and linear and flat is not None:
            reason = (f"its features are its output's last axis, which the Flatten {chain[flat][2]} may interleave "
                      "with the axes before it")
        elif reason is None and linear and isinstance(consumer, nn.Conv2d):
            reason = f"the convolution {chain[j][2]} takes axis 1 as its channels, not the Linear's features"
        elif reason is None and not linear and isinstance(consumer, nn.Linear) and flat is None:
            reason = f"{chain[j][2]} (Linear) takes the last axis as its features, not the channels (no Flatten between)"
        if reason is None and flat is not None and not linear and isinstance(consumer, nn.Linear):
            if consumer.in_features % m.out_channels:
                reason = (f"{chain[j][2]} takes {consumer.in_features} features, not a multiple of its "
                          f"{m.out_channels} channels")
        if reason is not None:
            skipped[qual] = reason
        else:
            groups.append((i, norms, flat, j))
    return groups, skipped


def _scores(layer, norm, criterion) -> np.ndarray:
    w = np.asarray(layer.weight._host(), np.float64).reshape(layer.weight.shape[0], -1)
    if criterion == "l1":
        return np.abs(w).sum(axis=1)
    if criterion == "l2":
        return np.sqrt((w * w).sum(axis=1))
    return np.abs(np.asarray(norm.weight._host(), np.float64))


def kept_channels(channels: int, amount: float) -> int:
    """How many of a layer's ``channels`` structured pruning of ``amount`` keeps (one at least)."""
    return max(1, int(round(channels * (1.0 - amount))))


def _amount_for(amount, qual) -> float:
    value = amount.get(qual) if isinstance(amount, dict) else amount
    return 0.0 if value is None else value


def _check_amount(amount) -> None:
    values = amount.values() if isinstance(amount, dict) else [amount]
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
            raise ValueError(f"prune: amount must be a fraction in [0, 1) (or a dict of them by layer name), got {v!r}")


def _check_names(amount, names) -> None:
    """A dict ``amount`` may name only the layers pruning applies to (``names``): a misspelled
    name would otherwise prune nothing, silently."""
    if isinstance(amount, dict):
        unknown = [k for k in amount if k not in names]
        if unknown:
            raise ValueError(f"prune: amount names {unknown}, not a Linear or Conv2d layer of the model; its "
                             f"layers are {list(names)}")


def _param(values: np.ndarray, like: Tensor) -> Parameter:
    """A parameter holding ``values`` on ``like``'s device, with its dtype."""
    dev = backend.device_of(like._data)
    host = np.ascontiguousarray(values).astype(like._data.dtype, copy=False)
    return Parameter(Tensor._wrap(host if dev is backend.CPU else dev.from_host(host)),
                     requires_grad=like.requires_grad)


def _remake(layer, **changes):
    """A new layer of ``layer``'s class and configuration, but for ``changes``."""
    config = layer.get_config()
    config.update(changes)
    fresh = type(layer)(**config)
    fresh.train(layer.training)
    return fresh


def _take(keep, axis):
    """The function that keeps indices ``keep`` along ``axis`` of an array (host or device)."""
    index = (slice(None),) * axis + (np.asarray(keep),)
    return lambda a: a[index]


def _moved(fresh, layer, names, slicers):
    """Give ``fresh`` the ``names`` parameters of ``layer`` cut by ``slicers``; returns the
    (old, new, cut) of each, for an optimizer's state to follow."""
    moves = []
    for name, cut in zip(names, slicers):
        old = getattr(layer, name)
        if old is None:
            continue
        new = _param(cut(old._host()), old)
        setattr(fresh, name, new)
        moves.append((old, new, cut))
    return moves


def _shrink_producer(layer, keep):
    key = "out_features" if isinstance(layer, nn.Linear) else "out_channels"
    fresh = _remake(layer, **{key: len(keep)})
    return fresh, _moved(fresh, layer, ("weight", "bias"), (_take(keep, 0), _take(keep, 0)))


def _shrink_norm(norm, keep):
    fresh = _remake(norm, num_features=len(keep))
    moves = _moved(fresh, norm, ("weight", "bias"), (_take(keep, 0), _take(keep, 0))) if norm.affine else []
    if norm.track_running_stats:
        dev = backend.device_of(norm.running_mean._data)
        for name in ("running_mean", "running_var"):
            values = np.ascontiguousarray(getattr(norm, name)._host()[keep])
            setattr(fresh, name, Tensor._wrap(values if dev is backend.CPU else dev.from_host(values)))
        fresh.num_batches_tracked = Tensor._wrap(norm.num_batches_tracked._data.copy())
    return fresh, moves


def _shrink_consumer(layer, keep, spatial):
    """``layer`` taking only the inputs that come from channels ``keep`` (each channel one input,
    or a block of ``spatial`` consecutive features after a Flatten)."""
    if isinstance(layer, nn.Linear):
        cols = (np.asarray(keep)[:, None] * spatial + np.arange(spatial)).reshape(-1)
        fresh = _remake(layer, in_features=len(cols))
    else:
        cols = np.asarray(keep)
        fresh = _remake(layer, in_channels=len(keep))
    return fresh, _moved(fresh, layer, ("weight", "bias"), (_take(cols, 1), lambda a: a))


def prune_structured(model, amount, criterion: str = "l1", inplace: bool = False):
    """Remove the lowest-scoring ``amount`` of the output channels of every prunable layer (see the
    module's notes); returns ``(model, PruneResult)`` -- a copy unless ``inplace``. ``amount`` is a
    fraction or a dict {layer name: fraction} (layers it does not name keep all their channels).
    ``criterion``: 'l1' or 'l2' (norm of each channel's weights) or 'bn_scale' (the |gamma| of the
    BatchNorm that follows, as in network slimming)."""
    _check_amount(amount)
    if criterion not in CRITERIA:
        raise ValueError(f"prune: criterion must be one of {CRITERIA}, got {criterion!r}")
    if not inplace:
        model = copy.deepcopy(model)
    chain = _chain(model)
    _check_names(amount, [qual for _, _, qual, m in chain if isinstance(m, (nn.Linear, nn.Conv2d))])
    groups, skipped = _plan(chain)
    result = PruneResult()
    result.skipped.update(skipped)
    decisions = []
    for i, norms, flat, j in groups:
        qual, layer = chain[i][2], chain[i][3]
        fraction = _amount_for(amount, qual)
        if fraction == 0.0:
            continue
        channels = layer.weight.shape[0]
        if criterion == "bn_scale" and not norms:
            result.skipped[qual] = "criterion 'bn_scale' needs a BatchNorm after it"
            continue
        if criterion == "bn_scale" and chain[norms[0]][3].weight is None:
            result.skipped[qual] = (f"criterion 'bn_scale' needs the scale of the BatchNorm after it, and "
                                    f"{chain[norms[0]][2]} has none (affine=False)")
            continue
        scores = _scores(layer, chain[norms[0]][3] if norms else None, criterion)
        n_keep = kept_channels(channels, fraction)
        keep = np.sort(np.argsort(-scores, kind="stable")[:n_keep])
        spatial = chain[j][3].in_features // channels if flat is not None and isinstance(layer, nn.Conv2d) else 1
        decisions.append((i, norms, j, keep, spatial))
        result.kept[qual], result.total[qual] = keep.tolist(), channels
    with no_grad():
        for i, norms, j, keep, spatial in decisions:
            if len(keep) == chain[i][3].weight.shape[0]:
                continue
            for k, make in [(i, lambda m: _shrink_producer(m, keep))] + \
                    [(n, lambda m: _shrink_norm(m, keep)) for n in norms] + \
                    [(j, lambda m: _shrink_consumer(m, keep, spatial))]:
                parent, name, qual, layer = chain[k]
                fresh, moves = make(layer)
                setattr(parent, name, fresh)
                chain[k] = (parent, name, qual, fresh)
                result.moves += moves
    return model, result


# ---------------------------------------------------------------- unstructured: masks
def _maskable(model):
    return [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def prune_unstructured(model, amount, inplace: bool = False):
    """Zero the ``amount`` fraction of smallest-magnitude weights of every Linear and Conv2d
    (per layer; a dict {layer name: fraction} chooses per layer) and keep a mask on each layer so
    that ``apply_masks`` (and ``PruningCallback`` during ``fit``) keeps them at zero. The model
    stays the same size and speed: dense kernels multiply the zeros too. Returns
    ``(model, PruneResult)`` with each layer's fraction of zero weights in ``sparsity``."""
    _check_amount(amount)
    _check_names(amount, [name for name, _ in _maskable(model)])
    if not inplace:
        model = copy.deepcopy(model)
    result = PruneResult()
    sparsity = result.sparsity
    with no_grad():
        for name, m in _maskable(model):
            fraction = _amount_for(amount, name)
            w = m.weight._host()
            mask = np.ones(w.shape, bool) if "_prune_mask" not in m.__dict__ else _host_mask(m)
            n_zero = int(round(w.size * fraction))
            if n_zero:
                order = np.argsort(np.abs(w), axis=None, kind="stable")
                flat = mask.reshape(-1)
                flat[order[:n_zero]] = False
            _set_mask(m, mask)
            sparsity[name] = float(1.0 - mask.mean())
    apply_masks(model)
    return model, result


def _host_mask(m) -> np.ndarray:
    mask = m.__dict__["_prune_mask"]
    return np.asarray(mask if isinstance(mask, np.ndarray) else backend.device_of(mask).to_host(mask), bool)


def _set_mask(m, mask: np.ndarray) -> None:
    dev = backend.device_of(m.weight._data)
    values = mask.astype(m.weight._data.dtype)
    object.__setattr__(m, "_prune_mask", values if dev is backend.CPU else dev.from_host(values))


def apply_masks(model) -> None:
    """Multiply every masked weight by its mask (after an optimizer step, say)."""
    with no_grad():
        for _, m in _maskable(model):
            mask = m.__dict__.get("_prune_mask")
            if mask is not None:
                m.weight._data *= mask
                m.weight._bump()


def remove_masks(model) -> None:
    """Forget the masks (the zeros stay in the weights, but nothing keeps them zero)."""
    for _, m in _maskable(model):
        m.__dict__.pop("_prune_mask", None)
