"""ember.compress: structured pruning through every supported layer pattern (exact where the
removed channels were zero), unstructured masks, pruning during fit, distillation against a
NumPy reference, the side-by-side report and `ember compress`."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ember
from ember import compress, models, nn


def _forward(model, x):
    model.eval()
    with ember.no_grad():
        return model(ember.tensor(x)).numpy()


def _zero_channels(layer, channels, bn=None):
    """Make the output channels of ``layer`` (and of the BatchNorm after it) contribute nothing."""
    with ember.no_grad():
        layer.weight._data[channels] = 0
        if layer.bias is not None:
            layer.bias._data[channels] = 0
        if bn is not None:
            bn.weight._data[channels] = 0
            bn.bias._data[channels] = 0


PATTERNS = {
    "conv-relu-pool-flatten-linear": lambda: nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 3 * 3, 12), nn.ReLU(),
        nn.Linear(12, 4)),
    "conv-bn-relu-conv-bn-avgpool": lambda: nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 6, 3, stride=2),
        nn.BatchNorm2d(6), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4)),
    "nested-sequential-dropout-bn1d": lambda: nn.Sequential(
        nn.Flatten(), nn.Sequential(nn.Linear(3 * 8 * 8, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Dropout(0.2)),
        nn.Linear(16, 10), nn.GELU(), nn.Linear(10, 4)),
}


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
@pytest.mark.parametrize("criterion", ["l1", "l2", "bn_scale"])
def test_pruning_channels_that_were_zero_changes_nothing(pattern, criterion, rng):
    ember.manual_seed(int(rng.integers(1 << 30)))
    model = PATTERNS[pattern]()
    x = rng.standard_normal((5, 3, 8, 8)).astype(np.float32)
    chain = [m for m in model.modules() if not isinstance(m, nn.Sequential)]
    # Zero half the channels of every prunable layer (the last one is the output: it stays).
    producers = [i for i, m in enumerate(chain) if isinstance(m, (nn.Conv2d, nn.Linear))][:-1]
    zeroed = {}
    for i in producers:
        layer = chain[i]
        bn = chain[i + 1] if isinstance(chain[i + 1], (nn.BatchNorm1d, nn.BatchNorm2d)) else None
        if criterion == "bn_scale" and bn is None:
            continue
        n = layer.weight.shape[0]
        channels = np.sort(rng.permutation(n)[: n // 2])
        _zero_channels(layer, channels, bn)  # with a BatchNorm after it, its channel must output 0 too
        zeroed[i] = channels
    want = _forward(model, x)
    small, result = compress.prune(model, 0.5, criterion=criterion)
    got = _forward(small, x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert small is not model and _forward(model, x).tolist() == want.tolist()  # the original is untouched
    names = [n for n, m in model.named_modules() if not isinstance(m, nn.Sequential) and n]
    assert sorted(result.kept) == sorted(names[i] for i in zeroed)
    for i, channels in zeroed.items():  # exactly the zeroed channels went
        assert result.kept[names[i]] == sorted(set(range(chain[i].weight.shape[0])) - set(channels.tolist()))
    assert "model's output" in result.skipped[names[[i for i, m in enumerate(chain)
                                                       if isinstance(m, (nn.Conv2d, nn.Linear))][-1]]]
    before, after = (sum(p.numel() for p in m.parameters()) for m in (model, small))
    assert after < before if zeroed else after == before


def test_seed_cnn_pruned_by_half_is_a_quarter_of_the_parameters_and_saves_and_loads(tmp_path, rng):
    model = models.cnn((3, 32, 32), 10)
    small, result = compress.prune(model, 0.5)
    assert [type(m).__name__ for m in small] == [type(m).__name__ for m in model]
    assert (small[0].out_channels, small[4].in_features, small[4].out_features, small[6].in_features) == \
        (16, 16 * 15 * 15, 64, 64)
    params = sum(p.numel() for p in small.parameters())
    assert params / sum(p.numel() for p in model.parameters()) < 0.26
    path = tmp_path / "small.safetensors"
    small.save(path)
    again = ember.load_model(path)  # the architecture recorded in the file is the pruned one
    x = rng.standard_normal((3, 3, 32, 32)).astype(np.float32)
    assert np.array_equal(_forward(again, x), _forward(small, x))
    twice, _ = compress.prune(again, 0.5)  # re-pruning a pruned checkpoint
    assert twice[0].out_channels == 8


def test_what_cannot_be_pruned_is_listed_and_left_alone():
    model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.Conv2d(6, 6, 3, groups=6), nn.ReLU(), nn.Flatten(),
                          nn.Linear(6 * 4 * 4, 8), nn.LayerNorm(8), nn.Linear(8, 3))
    small, result = compress.prune(model, 0.5)
    assert result.kept == {}
    assert "groups" in result.skipped["0"] or "grouped" in result.skipped["1"]
    assert "LayerNorm" in result.skipped["4"]
    assert "model's output" in result.skipped["6"]
    _, bn = compress.prune(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)), 0.5, criterion="bn_scale")
    assert "needs a BatchNorm" in bn.skipped["0"]


@pytest.mark.parametrize("call, error, match", [
    (lambda m: compress.prune(m, 1.0), ValueError, "amount must be a fraction in"),
    (lambda m: compress.prune(m, -0.1), ValueError, "amount must be a fraction in"),
    (lambda m: compress.prune(m, 0.5, criterion="random"), ValueError, "criterion must be one of"),
    (lambda m: compress.prune(m, 0.5, structured="yes"), TypeError, "structured must be True or False"),
    (lambda m: compress.prune(m, 0.5, structured=False, criterion="bn_scale"), ValueError, "structured pruning only"),
    (lambda m: compress.prune(nn.Linear(3, 3), 0.5), ValueError, "follows nn.Sequential models"),
])
def test_prune_rejects_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)))


def test_amount_per_layer_by_name():
    model = models.cnn((3, 16, 16), 10)
    small, result = compress.prune(model, {"4": 0.75})
    assert small[0].out_channels == 32 and small[4].out_features == 32 and list(result.kept) == ["4"]


def test_unstructured_masks_keep_pruned_weights_zero_through_training(rng):
    ember.manual_seed(3)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    masked, result = compress.prune(model, 0.6, structured=False)
    for name in ("0", "2"):
        assert result.sparsity[name] == pytest.approx(0.6, abs=0.02)
    zeros = [p.detach().numpy() == 0 for p in (masked[0].weight, masked[2].weight)]
    x, y = rng.standard_normal((64, 6)).astype(np.float32), rng.integers(0, 3, 64)
    masked.compile(optimizer="sgd", lr=0.5)
    masked.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[compress.PruningCallback(0.6, end_epoch=0)])
    for z, p in zip(zeros, (masked[0].weight, masked[2].weight)):
        assert (p.detach().numpy()[z] == 0).all()
    assert "as fast as before" in str(result)
    compress.remove_masks(masked)
    assert "_prune_mask" not in masked[0].__dict__


def test_gradual_unstructured_schedule_is_cubic():
    cb = compress.PruningCallback(0.8, start_epoch=2, end_epoch=6)
    assert [round(cb.target(e), 4) for e in (0, 2, 4, 6, 9)] == [0.0, 0.0, 0.7, 0.8, 0.8]


def test_structured_pruning_during_fit_carries_the_optimizer_over(rng):
    ember.manual_seed(4)
    model = models.cnn((1, 8, 8), 4, filters=8, hidden=16)
    x, y = rng.standard_normal((96, 1, 8, 8)).astype(np.float32), rng.integers(0, 4, 96)
    model.compile(optimizer="adam", metrics=["accuracy"])
    cb = compress.PruningCallback(0.5, structured=True, epochs=[0, 1])
    history = model.fit(x, y, epochs=3, batch_size=32, verbose=0, callbacks=[cb])
    assert model[0].out_channels == 4 and model[4].out_features == 8  # in two equal steps
    assert [r.total["0"] for r in cb.results] == [8, 6]
    optimizer = model._compiled.optimizer
    owned = {id(p) for p in model.parameters()}
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == owned
    for p in model.parameters():
        state = optimizer.state[id(p)]
        assert all(v.shape == p.shape for v in state.values() if hasattr(v, "shape") and v.ndim)
    assert len(history.history["loss"]) == 3 and np.isfinite(history.history["loss"]).all()


def test_distillation_loss_matches_numpy(rng):
    s = rng.standard_normal((6, 5)).astype(np.float32)
    t = rng.standard_normal((6, 5)).astype(np.float32)
    y = rng.integers(0, 5, 6)
    T, alpha = 3.0, 0.7
    student = ember.tensor(s, requires_grad=True)
    loss = compress.DistillationLoss(T, alpha)(student, ember.tensor(t), ember.tensor(y))
    loss.backward()

    def log_softmax(z):
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    s64, t64 = s.astype(np.float64), t.astype(np.float64)
    p_t = np.exp(log_softmax(t64 / T))
    kl = (p_t * (np.log(p_t) - log_softmax(s64 / T))).sum(axis=1).mean()
    ce = -log_softmax(s64)[np.arange(6), y].mean()
    assert loss.item() == pytest.approx(alpha * T * T * kl + (1 - alpha) * ce, rel=1e-5)
    p_s_t = np.exp(log_softmax(s64 / T))
    p_s = np.exp(log_softmax(s64))
    onehot = np.eye(5)[y]
    grad = alpha * T * (p_s_t - p_t) / 6 + (1 - alpha) * (p_s - onehot) / 6
    np.testing.assert_allclose(student.grad.numpy(), grad, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        compress.DistillationLoss(0.0)
    with pytest.raises(ValueError, match="alpha must be in"):
        compress.DistillationLoss(2.0, 1.5)
    with pytest.raises(ValueError, match="teacher logits of shape"):
        compress.DistillationLoss()(student, ember.tensor(t[:, :3]), ember.tensor(y))


def test_distill_trains_the_student_through_fit(rng, tmp_path):
    (x, y), (xt, yt) = ember.datasets.digits()
    x, xt = x.astype(np.float32) / 16, xt.astype(np.float32) / 16
    ember.manual_seed(0)
    teacher = models.cnn((1, 8, 8), 10)
    teacher.compile(optimizer="adam", lr=3e-3, metrics=["accuracy"])
    teacher.fit(x, y, epochs=5, batch_size=32, verbose=0)
    teacher.train()
    student = models.cnn((1, 8, 8), 10, filters=8, hidden=32)
    checkpoint = ember.callbacks.ModelCheckpoint(tmp_path / "student.safetensors", monitor="val_loss")
    history = compress.distill(teacher, student, x, y, epochs=6, lr=3e-3, batch_size=32, validation_data=(xt, yt),
                               verbose=0, callbacks=[checkpoint])
    assert history.history["val_accuracy"][-1] > 0.85
    assert "forward" not in student.__dict__ and teacher.training  # both as they were
    again = ember.load_model(tmp_path / "student.safetensors")
    assert again[0].out_channels == 8
    with pytest.raises(ValueError, match="must be different models"):
        compress.distill(student, student, x, y)


def test_report_compares_forms_side_by_side(rng):
    (x, y), (xt, yt) = ember.datasets.digits()
    xt = xt.astype(np.float32) / 16
    model = models.cnn((1, 8, 8), 10)
    small, _ = compress.prune(model, 0.5)
    report = compress.compare({"original": model, "pruned": small}, eval_data=(xt, yt), rounds=3)
    assert [f.name for f in report.forms] == ["original", "pruned"]
    assert report.ratio("pruned", "params") < 0.3 and report.ratio("pruned", "disk") < 0.35
    assert report["pruned"].flops < report["original"].flops
    assert set(report["pruned"].scores) == {"accuracy", "precision", "recall", "f1"}
    text = str(report)
    assert "batch-1 ms" in text and "smaller" in text
    with pytest.raises(ValueError, match="give eval_data or an example"):
        compress.compare({"a": model})
    with pytest.raises(KeyError, match="no form named"):
        report["int8"]


def test_ember_compress_prunes_fine_tunes_quantizes_and_reports(tmp_path, capsys):
    from ember import cli

    (x, y), _ = ember.datasets.digits()
    ember.manual_seed(0)
    model = models.cnn((1, 8, 8), 10)
    model.compile(optimizer="adam", lr=3e-3)
    model.fit(x.astype(np.float32) / 16, y, epochs=2, batch_size=32, verbose=0)
    path = tmp_path / "digits.safetensors"
    model.save(path, config={"dataset": "digits", "scale": 1 / 16})
    assert cli.main(["compress", str(path), "--prune", "0.5", "--finetune", "1", "--quantize", "8"]) == 0
    text = capsys.readouterr().out
    assert "pruned 0: 16 of 32 channels kept" in text and "left 6 alone" in text
    assert "pruned 0.5 + 1 epochs + int8" in text and "smaller" in text
    small = ember.load_model(tmp_path / "digits.pruned50.int8.safetensors")
    assert small[0].out_channels == 16
    assert cli.main(["compress", str(path)]) != 0
    assert "ask for --prune FRACTION, --quantize BITS or both" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["compress", str(path), "--prune", "1.5"])


def test_cached_teacher_outputs_give_the_same_student(rng):
    x = rng.standard_normal((96, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 4, 96)
    ember.manual_seed(5)
    teacher = models.cnn((1, 8, 8), 4, filters=8, hidden=16)
    weights = []
    for cache in (False, True):
        ember.manual_seed(6)
        student = models.cnn((1, 8, 8), 4, filters=4, hidden=8)
        compress.distill(teacher, student, x, y, epochs=2, batch_size=16, seed=1, verbose=0, cache_teacher=cache)
        weights.append([p.detach().numpy().copy() for p in student.parameters()])
    for a, b in zip(*weights):  # the cache ran the teacher in batches of 256: float32 rounding may differ
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * np.abs(a).max())
    with pytest.raises(ValueError, match="cache_teacher needs x as an array and no transform"):
        compress.distill(teacher, student, x, y, cache_teacher=True, transform=lambda b, r: b)


def test_a_teacher_ending_in_a_softmax_is_distilled_from_its_logits(rng):
    from ember import keras

    x = rng.standard_normal((48, 4)).astype(np.float32)
    y = rng.integers(0, 3, 48)
    ember.manual_seed(3)
    logits = nn.Sequential(nn.Linear(4, 3))
    dense = keras.Sequential([keras.layers.Dense(3, activation="softmax", input_shape=(4,))])
    with ember.no_grad():
        dense.layers[0].linear.weight._data[:] = logits[0].weight._data
        dense.layers[0].linear.bias._data[:] = logits[0].bias._data
    teachers = {"logits": logits, "nn softmax": nn.Sequential(logits[0], nn.Softmax(1)), "keras softmax": dense}
    weights = {}
    for name, teacher in teachers.items():
        for cache in (False, True):
            ember.manual_seed(4)
            student = nn.Sequential(nn.Linear(4, 3))
            compress.distill(teacher, student, x, y, epochs=2, batch_size=16, seed=1, verbose=0, cache_teacher=cache)
            weights[name, cache] = [p.detach().numpy().copy() for p in student.parameters()]
    # Fed the probabilities as logits, the student would learn a flatter target: other weights.
    for key, got in weights.items():
        for a, b in zip(got, weights["logits", False]):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6, err_msg=str(key))


@pytest.mark.parametrize("make, shape, where", [
    (lambda: nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Linear(8, 4)), (2, 3, 10, 10), "no Flatten"),
    (lambda: nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Flatten(), nn.Linear(18, 2)), (2, 3, 4), "the Flatten 2"),
    (lambda: nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Conv2d(4, 2, 1)), (2, 4, 5, 6), "axis 1"),
    (lambda: nn.Sequential(nn.Linear(6, 6), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(12, 2)), (2, 2, 4, 6),
     "pools over the last two axes"),
    (lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.BatchNorm1d(36), nn.Linear(36, 2)), (2, 3, 5, 5),
     "after the Flatten"),
])
def test_a_consumer_whose_features_are_not_the_channels_is_left_alone(make, shape, where, rng):
    model = make()
    x = rng.standard_normal(shape).astype(np.float32)
    small, result = compress.prune(model, 0.5)
    assert result.kept == {} and where in result.skipped["0"]
    np.testing.assert_array_equal(_forward(small, x), _forward(model, x))  # it still runs, unchanged


class Residual(nn.Sequential):
    def forward(self, x):
        return x + super().forward(x)


def test_a_sequential_subclass_with_its_own_forward_is_not_read_as_a_chain(rng):
    x = rng.standard_normal((3, 6)).astype(np.float32)
    # Read as a chain, Linear 0 would be pruned with the Linear inside the block as its consumer,
    # breaking the block's x + f(x).
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), Residual(nn.Linear(8, 8), nn.ReLU()), nn.Linear(8, 2))
    small, result = compress.prune(model, 0.5)
    assert result.kept == {} and "2 (Residual)" in result.skipped["0"]
    np.testing.assert_array_equal(_forward(small, x), _forward(model, x))
    with pytest.raises(ValueError, match="the model is a Residual with its own forward"):
        compress.prune(Residual(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 6)), 0.5)
    assert compress.flops_per_sample(model, x[0]) is None  # not a chain of layers to count one by one

    class Block(nn.Sequential):  # Sequential's forward: a chain
        pass

    chained = nn.Sequential(Block(nn.Linear(6, 8), nn.ReLU()), nn.Linear(8, 2))
    assert compress.flops_per_sample(chained, x[0]) == 2 * (6 * 8 + 8 * 2)
    assert list(compress.prune(chained, 0.5)[1].kept) == ["0.0"]


def test_amount_naming_an_unknown_layer_is_refused():
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    for structured in (True, False):
        with pytest.raises(ValueError, match=r"amount names \['fc1'\].*its layers are \['0', '2'\]"):
            compress.prune(model, {"fc1": 0.5, "0": 0.5}, structured=structured)


def test_bn_scale_without_a_batchnorm_scale_leaves_the_layer_alone(rng):
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6, affine=False), nn.ReLU(), nn.Linear(6, 8),
                          nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    small, result = compress.prune(model, 0.5, criterion="bn_scale")
    assert "has none (affine=False)" in result.skipped["0"] and list(result.kept) == ["3"]
    assert small[0].out_features == 6 and small[3].out_features == 4
    assert _forward(small, rng.standard_normal((3, 4)).astype(np.float32)).shape == (3, 2)


def test_report_counts_parameters_not_statistics_or_packed_bytes():
    model = nn.Sequential(nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))
    n = sum(p.numel() for p in model.parameters())
    forms = {"float": model}
    for bits in (8, 4):
        forms[f"int{bits}"], _ = ember.quant.quantize(model, bits=bits)
    report = compress.compare(forms, example=np.zeros((1, 64), np.float32), rounds=1)
    assert [f.params for f in report.forms] == [n, n, n]


def _frozen_bn_cnn():
    model = models.cnn((1, 8, 8), 4, filters=8, hidden=16)
    model = nn.Sequential(model[0], nn.BatchNorm2d(8), *list(model)[1:])
    model.train()
    model[1].eval()  # a frozen BatchNorm inside a training model
    return model


def test_prune_with_eval_data_keeps_each_layers_mode(rng):
    model = _frozen_bn_cnn()
    x, y = rng.standard_normal((16, 1, 8, 8)).astype(np.float32), rng.integers(0, 4, 16)
    small, _ = compress.prune(model, 0.5, eval_data=(x, y))
    for m in (model, small):
        assert m.training and m[0].training and not m[1].training


def test_distill_changes_nothing_when_it_fails_before_training(rng):
    x, y = rng.standard_normal((32, 1, 8, 8)).astype(np.float32), rng.integers(0, 4, 32)
    teacher = _frozen_bn_cnn()
    student = models.cnn((1, 8, 8), 4, filters=4, hidden=8)
    student.compile(optimizer="sgd")
    compiled = student._compiled
    failures = [
        (dict(optimizer="no-such-optimizer"), ValueError),
        (dict(cache_teacher=True, x=x[:, :, :6]), ValueError),  # the teacher cannot take these inputs
        (dict(epochs=-1), ValueError),  # fit's own checks
    ]
    for kwargs, error in failures:
        with pytest.raises(error):
            compress.distill(teacher, student, **{"x": x, "y": y, "verbose": 0, **kwargs})
        assert teacher.training and teacher[0].training and not teacher[1].training
        assert student._compiled is compiled and "forward" not in student.__dict__
    wrong = models.cnn((1, 6, 6), 4, filters=4, hidden=8)  # fails in the first step: it cannot take 8x8 inputs
    with pytest.raises(ValueError, match="features"):
        compress.distill(wrong, student, x, y, verbose=0)
    assert student._compiled is compiled
    fresh = models.cnn((1, 8, 8), 4, filters=4, hidden=8)
    with pytest.raises(ValueError):
        compress.distill(teacher, fresh, x, y, optimizer="no-such-optimizer")
    assert "_compiled" not in fresh.__dict__
    compress.distill(teacher, student, x, y, epochs=1, verbose=0)
    assert student._compiled is not compiled and teacher.training and not teacher[1].training


def test_structured_pruning_callback_refuses_distributed_training(monkeypatch, rng):
    ember.manual_seed(4)
    model = models.cnn((1, 8, 8), 4, filters=8, hidden=16)
    x, y = rng.standard_normal((32, 1, 8, 8)).astype(np.float32), rng.integers(0, 4, 32)
    model.compile(optimizer="adam")
    before = [p.detach().numpy().copy() for p in model.parameters()]
    monkeypatch.setattr(ember.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(ember.distributed, "world_size", lambda: 2)
    with pytest.raises(RuntimeError, match="one of 2 ranks"):
        model.fit(x, y, epochs=2, batch_size=16, verbose=0,
                  callbacks=[compress.PruningCallback(0.5, structured=True, epochs=[0])])
    assert model[0].out_channels == 8  # refused before any step
    for a, p in zip(before, model.parameters()):
        np.testing.assert_array_equal(p.detach().numpy(), a)
    # unstructured masks keep the parameters, so they stay allowed
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[compress.PruningCallback(0.5, end_epoch=0)])


_PRUNE_ON_RANKS = '''
import json, sys
import numpy as np
import ember
from ember import compress, distributed, models

w = distributed.init()
rng = np.random.default_rng(0)
x, y = rng.standard_normal((64, 1, 8, 8)).astype(np.float32), rng.integers(0, 4, 64)
ember.manual_seed(0)
model = models.cnn((1, 8, 8), 4, filters=8, hidden=16)
model.compile(optimizer="sgd")
try:
    model.fit(x, y, epochs=2, batch_size=16, verbose=0,
              callbacks=[compress.PruningCallback(0.5, structured=True, epochs=[0])])
    error = None
except RuntimeError as exc:
    error = str(exc)
with open(f"{sys.argv[1]}/rank{w.rank}.json", "w") as f:
    json.dump({"size": w.size, "error": error, "channels": model[0].out_channels}, f)
'''


def test_structured_pruning_callback_under_mpiexec_is_refused_on_every_rank(tmp_path):
    beside = Path(sys.executable).parent / "mpiexec"
    mpiexec = str(beside) if beside.exists() else shutil.which("mpiexec")
    if mpiexec is None or importlib.util.find_spec("mpi4py") is None:
        pytest.skip("MPI cannot start here: mpi4py or mpiexec is missing")
    script = tmp_path / "prune_on_ranks.py"
    script.write_text(_PRUNE_ON_RANKS)
    env = dict(os.environ, EMBER_NUM_THREADS="1")
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        env.pop(name, None)
    done = subprocess.run([mpiexec, "-n", "2", sys.executable, str(script), str(tmp_path)], capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    for r in range(2):
        got = json.loads((tmp_path / f"rank{r}.json").read_text())
        assert got["size"] == 2 and got["channels"] == 8 and "one of 2 ranks" in got["error"]


class _Channels(ember.callbacks.Callback):
    """The first layer's output channels after each epoch (after the pruning callback's step)."""

    def __init__(self):
        self.kept = []

    def on_epoch_end(self, epoch, logs=None):
        self.kept.append(self.model[0].out_features)


@pytest.mark.parametrize("channels, epochs, kept", [(10, [0, 1, 2], [8, 7, 5]), (7, [0, 1, 2, 3], [6, 5, 4, 4])])
def test_structured_pruning_during_fit_ends_where_one_shot_pruning_does(rng, channels, epochs, kept):
    ember.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, channels), nn.ReLU(), nn.Linear(channels, 3))
    one_shot = compress.prune(model, 0.5)[0][0].out_features
    x, y = rng.standard_normal((32, 4)).astype(np.float32), rng.integers(0, 3, 32)
    model.compile(optimizer="adam")
    record = _Channels()
    model.fit(x, y, epochs=len(epochs), batch_size=16, verbose=0,
              callbacks=[compress.PruningCallback(0.5, structured=True, epochs=epochs), record])
    assert record.kept == kept and kept[-1] == one_shot and model[2].in_features == one_shot


def _single_logit_model():
    ember.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))


def test_compare_scores_a_single_logit_as_a_binary_classifier_and_float_targets_by_mse(rng):
    model = _single_logit_model()
    x = rng.standard_normal((200, 8)).astype(np.float32)
    logit = _forward(model, x)
    y = (logit[:, 0] > 0).astype(np.int64)
    assert 0 < y.sum() < len(y)  # both classes present
    scores = compress.compare({"m": model}, eval_data=(x, y), rounds=1)["m"].scores
    assert scores == {"accuracy": 1.0, "precision": 1.0, "recall": 1.0, "f1": 1.0}
    flipped = compress.compare({"m": model}, eval_data=(x, 1 - y), rounds=1)["m"].scores
    assert flipped["accuracy"] == 0.0
    assert compress.compare({"m": model}, eval_data=(x, y.astype(bool)), rounds=1)["m"].scores["accuracy"] == 1.0
    report = compress.compare({"m": model, "shifted": _single_logit_model()}, eval_data=(x, logit + 0.5), rounds=1)
    assert report["m"].scores == {"mse": pytest.approx(0.25, rel=1e-6)} and "mse" in str(report)
    assert compress.compare({"m": model}, eval_data=(x, logit[:, 0]), rounds=1)["m"].scores == {"mse": 0.0}
    with pytest.raises(ValueError, match=r"compare: eval_data's targets have shape \(100,\), the model's outputs "
                                         r"\(200, 1\)"):
        compress.compare({"m": model}, eval_data=(x, logit[:100, 0]), rounds=1)
