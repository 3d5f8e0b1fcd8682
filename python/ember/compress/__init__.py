"""Making a trained model smaller and faster beyond quantization: structured pruning (whole
channels removed: a smaller dense model), unstructured pruning (masked zeros, honest about not
being faster), knowledge distillation into a smaller student, and one side-by-side report of
every form's size, FLOPs, speed and accuracy (``compare``; ``ember compress`` on the command
line).

    from ember import compress
    small, result = compress.prune(model, 0.5, eval_data=(x_test, y_test))
    print(result)                       # channels kept per layer, layers left alone, the report
    small.compile(optimizer="adam"); small.fit(x, y, epochs=3)         # fine-tune
    print(compress.compare({"original": model, "pruned": small}, eval_data=(x_test, y_test)))
"""

from __future__ import annotations

import copy

from .. import nn
from .callback import PruningCallback
from .distill import DistillationLoss, distill
from .prune import (CRITERIA, PruneResult, apply_masks, prune_structured, prune_unstructured, remove_masks)
from .report import CompressionReport, Form, compare, flops_per_sample


def prune(model, amount, structured: bool = True, criterion: str = "l1", eval_data=None, inplace: bool = False):
    """Prune ``model`` by ``amount`` (a fraction of each prunable layer's output channels, or with
    ``structured=False`` of each Linear/Conv2d's weights; or a dict {layer name: fraction}).
    Returns ``(pruned model, PruneResult)``; the original is left as it was unless ``inplace``.
    With ``eval_data=(x, y)`` the result's ``report`` compares the two forms (sizes, FLOPs,
    batch-1 latency, batch-256 throughput, and the scores ``compare`` gives: accuracy / precision /
    recall / F1 for class labels, the mean squared error otherwise).

    Structured (the default): see ``ember.compress.prune``'s notes; ``criterion`` 'l1', 'l2' or
    'bn_scale'. Unstructured: magnitude pruning per layer, with masks that ``apply_masks`` /
    ``PruningCallback`` keep in force while fine-tuning."""
    if not isinstance(structured, bool):
        raise TypeError(f"prune: structured must be True or False, got {structured!r}")
    original = copy.deepcopy(model) if eval_data is not None and inplace else model
    if structured:
        pruned, result = prune_structured(model, amount, criterion, inplace)
    else:
        if criterion not in ("l1", "l2"):
            raise ValueError(f"prune: unstructured pruning removes the smallest weights by magnitude; criterion "
                             f"{criterion!r} applies to structured pruning only")
        pruned, result = prune_unstructured(model, amount, inplace)
    if eval_data is not None:
        restore_modes = nn.saved_modes(original, pruned)
        try:
            result.report = compare({"original": original, "pruned": pruned}, eval_data=eval_data)
        finally:
            restore_modes()
    return pruned, result


__all__ = ["CRITERIA", "CompressionReport", "DistillationLoss", "Form", "PruneResult", "PruningCallback",
           "apply_masks", "compare", "distill", "flops_per_sample", "prune", "prune_structured",
           "prune_unstructured", "remove_masks"]
