"""compile / fit / evaluate / predict, the callbacks, checkpoints (atomic, resumable), Ctrl-C,
and the ``ember train`` / ``ember evaluate`` commands."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import ember
from ember import nn
from ember.callbacks import Callback, CSVLogger, EarlyStopping, LearningRateScheduler, ModelCheckpoint
from ember.data import DataLoader, TensorDataset
from ember.data import transforms as T


def blobs(n=96, classes=3, dim=6, seed=0):
    """Separable Gaussian blobs: (x float32 (n, dim), y int64)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, dim)) * 3
    y = rng.integers(0, classes, n)
    x = (centres[y] + rng.standard_normal((n, dim))).astype(np.float32)
    return x, y.astype(np.int64)


def mlp(dim=6, classes=3, dropout=0.0):
    return nn.Sequential(nn.Linear(dim, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, classes))


class Scripted(Callback):
    """Replaces the monitored log with a scripted sequence (and records the weights)."""

    def __init__(self, values, key="val_loss"):
        self.values, self.key, self.weights = list(values), key, []

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch]
        self.weights.append({k: v.cpu().numpy().copy() for k, v in self.model.state_dict().items()})


def test_compile_resolves_names_and_objects(device):
    model = mlp()
    model.compile(optimizer="sgd", lr=0.1, loss="cross_entropy", metrics=["accuracy", "f1"])
    c = model._compiled
    assert isinstance(c.optimizer, ember.optim.SGD) and c.optimizer.param_groups[0]["lr"] == 0.1
    assert [m.name for m in c.metrics] == ["accuracy", "f1"]
    opt = ember.optim.Adam(model.parameters(), lr=3e-3)
    model.compile(optimizer=opt, loss=nn.CrossEntropyLoss(), metrics="accuracy")
    assert model._compiled.optimizer is opt
    with pytest.raises(ValueError, match="unknown optimizer 'adagrad'"):
        model.compile(optimizer="adagrad")
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        model.compile(loss="hinge")
    with pytest.raises(ValueError, match="lr= applies to an optimizer given by name"):
        model.compile(optimizer=opt, lr=0.1)
    with pytest.raises(ValueError, match="over this model's parameters"):
        model.compile(optimizer=ember.optim.Adam(mlp().parameters()))
    with pytest.raises(RuntimeError, match="call model.compile"):
        mlp().fit(*blobs())


def test_a_tiny_model_overfits_a_fixed_batch(device):
    ember.manual_seed(0)
    x, y = blobs(32, classes=4, seed=1)
    model = mlp(classes=4)
    model.compile(optimizer="adam", lr=0.02, metrics=["accuracy"])
    history = model.fit(x, y, batch_size=32, epochs=150, verbose=0)
    assert history.history["loss"][-1] < 0.05 < history.history["loss"][0]
    assert history.history["accuracy"][-1] == 1.0
    assert model.evaluate(x, y)["accuracy"] == 1.0


def test_fit_history_validation_and_modes(device):
    ember.manual_seed(0)
    x, y = blobs(120)
    seen = []

    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = mlp(dropout=0.2)

        def forward(self, inp):
            seen.append(self.training)
            return self.net(inp)

    model = Probe()
    model.eval()
    model.compile(optimizer="adam", lr=1e-2, metrics=["accuracy", "precision"])
    history = model.fit(x, y, batch_size=16, epochs=3, validation_split=0.25, verbose=0)
    assert set(history.history) >= {"loss", "accuracy", "precision", "val_loss", "val_accuracy", "val_precision",
                                    "samples_per_s"}
    assert all(len(v) == 3 for v in history.history.values()) and history.epoch == [0, 1, 2]
    # 90 training samples -> 6 training batches per epoch; validation (30 samples) in one batch.
    assert seen == ([True] * 6 + [False]) * 3
    assert model.training is False  # the mode it had before fit
    logits = model.predict(x[:10], batch_size=4)
    assert logits.shape == (10, 3) and not model.training
    scores = model.evaluate(x[90:], y[90:], return_dict=True)
    assert scores["loss"] == pytest.approx(history.history["val_loss"][-1], rel=1e-6)
    with pytest.raises(ValueError, match="x has 120 samples but y has 119"):
        model.fit(x, y[:-1])
    with pytest.raises(ValueError, match="give validation_data or validation_split, not both"):
        model.fit(x, y, validation_split=0.1, validation_data=(x, y))
    with pytest.raises(ValueError, match="epochs must be an int >= 0"):
        model.fit(x, y, epochs=-1)


def test_fit_accepts_loaders_and_class_weight(device):
    ember.manual_seed(0)
    x, y = blobs(64)
    model = mlp()
    model.compile(optimizer="sgd", lr=0.0, metrics=["accuracy"])  # lr 0: the weights stay put
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=False)
    plain = model.fit(loader, epochs=1, verbose=0).history["loss"][0]
    weighted = model.fit(x, y, batch_size=64, epochs=1, shuffle=False, class_weight={0: 0.0, 1: 2.0},
                         verbose=0).history["loss"][0]
    with ember.no_grad():
        per_sample = nn.functional.cross_entropy(model(ember.tensor(x)), ember.tensor(y),
                                                 reduction="none").cpu().numpy()
    w = np.array([0.0, 2.0, 1.0])[y]
    assert plain == pytest.approx(per_sample.mean(), rel=1e-5)
    assert weighted == pytest.approx((per_sample * w).mean(), rel=1e-5)
    with pytest.raises(ValueError, match="y must be None when x is a DataLoader"):
        model.fit(loader, y)
    with pytest.raises(ValueError, match=r"class_weight\[1\] must be a finite weight >= 0"):
        model.fit(x, y, class_weight={1: -1.0}, verbose=0)


@pytest.mark.parametrize("monitor, mode", [("val_loss", "min"), ("val_acc", "max"), ("val_accuracy", "max"),
                                           ("val_top5", "max"), ("top_3", "max"), ("val_f1_macro", "max"),
                                           ("val_auc", "max"), ("val_mse", "min")])
def test_mode_auto_knows_which_logs_grow_better(monitor, mode):
    assert EarlyStopping(monitor=monitor)._monitor.mode == mode
    assert ModelCheckpoint("m.safetensors", monitor=monitor)._monitor.mode == mode


def test_early_stopping_restores_the_best_weights(device):
    ember.manual_seed(0)
    x, y = blobs()
    model = mlp()
    model.compile(optimizer="adam", lr=1e-2)
    script = Scripted([3.0, 1.0, 2.0, 2.0, 0.5, 0.1])
    stop = EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    history = model.fit(x, y, batch_size=32, epochs=6, validation_data=(x, y), callbacks=[script, stop], verbose=0)
    # two epochs without improvement (2.0, 2.0 after 1.0), then it stops: Keras's rule
    assert history.epoch == [0, 1, 2, 3] and stop.stopped_epoch == 3 and stop.best_epoch == 1
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v.cpu().numpy(), script.weights[1][k])
    assert not np.array_equal(script.weights[1]["0.weight"], script.weights[3]["0.weight"])
    with pytest.raises(KeyError, match="monitor 'val_acc' is not among the logs"):
        model.fit(x, y, epochs=1, callbacks=[EarlyStopping(monitor="val_acc")], verbose=0)


def test_model_checkpoint_best_only_and_csv_logger(device, tmp_path):
    ember.manual_seed(0)
    x, y = blobs()
    model = mlp()
    model.compile(optimizer="adam", lr=1e-2, metrics=["accuracy"])
    path = tmp_path / "ckpt-{epoch}.safetensors"
    best = ModelCheckpoint(path, monitor="val_loss", save_best_only=True)
    log = CSVLogger(tmp_path / "log.csv")
    model.fit(x, y, epochs=4, validation_data=(x, y), callbacks=[Scripted([2.0, 1.0, 1.5, 0.5]), best, log],
              verbose=0)
    assert sorted(p.name for p in tmp_path.glob("ckpt-*")) == ["ckpt-1.safetensors", "ckpt-2.safetensors",
                                                                "ckpt-4.safetensors"]
    assert best.best == 0.5 and best.last_saved == tmp_path / "ckpt-4.safetensors"
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert rows[0].split(",")[0] == "epoch" and "val_loss" in rows[0] and len(rows) == 5
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1", "2", "3"]
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary files left behind


def test_learning_rate_scheduler_sets_the_rate(device):
    x, y = blobs()
    model = mlp()
    model.compile(optimizer="sgd", lr=0.1)
    rates = []

    class Record(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            rates.append(self.params["optimizer"].param_groups[0]["lr"])

    history = model.fit(x, y, epochs=3, verbose=0,
                        callbacks=[LearningRateScheduler(lambda epoch, lr: 0.1 * 0.5**epoch), Record()])
    assert rates == [0.1, 0.05, 0.025] and history.history["lr"] == [0.1, 0.05, 0.025]
    with pytest.raises(ValueError, match="the schedule returned nan"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[LearningRateScheduler(lambda e, lr: float("nan"))])


def test_learning_rate_scheduler_per_batch_counts_steps_over_the_run(tmp_path):
    """interval="batch": a function gets the step counted over epochs, a scheduler is set to it
    -- and a run resumed from a checkpoint carries on at the step it stopped."""
    x, y = blobs()  # 96 samples: 6 steps of 16 per epoch
    seen = []

    class Record(Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(self.params["optimizer"].param_groups[0]["lr"])

    model = mlp()
    model.compile(optimizer="sgd", lr=0.1)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False,
              callbacks=[LearningRateScheduler(lambda step, lr: 0.001 * step, interval="batch"), Record()])
    np.testing.assert_allclose(seen, 0.001 * np.arange(12))

    def run(epochs, resume):
        model = mlp()
        opt = ember.optim.SGD(model.parameters(), lr=0.1)
        model.compile(optimizer=opt)
        sched = ember.optim.lr_scheduler.WarmupCosineLR(opt, warmup_steps=4, total_steps=18)
        del seen[:]
        model.fit(x, y, batch_size=16, epochs=epochs, verbose=0, callbacks=[
            LearningRateScheduler(sched, interval="batch"), Record(), ModelCheckpoint(tmp_path / "s.safetensors")],
            resume_from=tmp_path / "s.safetensors" if resume else None)
        return list(seen)

    whole = run(3, False)
    assert len(whole) == 18 and whole[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    run(1, False)
    assert run(3, True) == pytest.approx(whole[6:])
    with pytest.raises(ValueError, match="interval must be 'epoch' or 'batch'"):
        LearningRateScheduler(lambda e, lr: lr, interval="step")
    plateau = ember.optim.lr_scheduler.ReduceLROnPlateau(ember.optim.SGD(mlp().parameters(), lr=0.1))
    with pytest.raises(TypeError, match="steps on a metric"):
        LearningRateScheduler(plateau, interval="batch")


def _cnn_run(tmp_path, epochs, resume=False):
    """A small CNN with dropout and augmentation; fresh objects every call, as a new process has."""
    ember.manual_seed(123 if resume else 0)  # a resumed run must not depend on the seed it starts with
    x, y = ember.datasets.synthetic(96, shape=(2, 8, 8), classes=3, seed=1)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Dropout(0.3), nn.Flatten(), nn.Linear(144, 3))
    model.compile(optimizer="adam", lr=1e-2, metrics=["accuracy"])
    augment = T.Compose([T.RandomCrop((8, 8), padding=1), T.RandomHorizontalFlip()])
    ckpt = ModelCheckpoint(tmp_path / "run.safetensors", monitor="val_loss")
    history = model.fit(x, y, batch_size=16, epochs=epochs, validation_split=0.25, transform=augment, verbose=0,
                        callbacks=[ckpt], resume_from=tmp_path / "run.safetensors" if resume else None,
                        seed=None if resume else 7)
    return model, history


def test_resume_gives_the_uninterrupted_result(device, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    straight, h4 = _cnn_run(tmp_path / "a", 4)
    _cnn_run(tmp_path / "b", 2)
    resumed, h2 = _cnn_run(tmp_path / "b", 4, resume=True)
    for (k, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        np.testing.assert_array_equal(a.cpu().numpy(), b.cpu().numpy(), err_msg=k)
    assert h2.epoch == [0, 1, 2, 3] and h2.history["loss"] == h4.history["loss"]
    # epochs is the final epoch's index (Keras's rule): nothing left to train is an error, not a no-op.
    before = {k: v.cpu().numpy().copy() for k, v in resumed.state_dict().items()}
    for epochs in (4, 3):
        with pytest.raises(ValueError, match=f"saved after 4 epochs and epochs={epochs} .* pass epochs > 4"):
            resumed.fit(np.zeros((4, 2, 8, 8), np.float32), np.zeros(4, np.int64), epochs=epochs, verbose=0,
                        resume_from=tmp_path / "b" / "run.safetensors")
    for k, v in resumed.state_dict().items():
        np.testing.assert_array_equal(v.cpu().numpy(), before[k], err_msg=k)
    with pytest.raises(ValueError, match="initial_epoch=2 leaves no epoch to train before epochs=2"):
        resumed.fit(np.zeros((4, 2, 8, 8), np.float32), np.zeros(4, np.int64), epochs=2, initial_epoch=2, verbose=0)


def test_a_resume_whose_record_is_damaged_changes_nothing(tmp_path):
    """The seed and history a checkpoint records for resuming are checked before the weights
    and optimizer state load: a damaged record is an error naming the file, and the model is
    left as it was."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    x, y = blobs()
    ember.manual_seed(0)
    model = mlp()
    model.compile(optimizer="adam", lr=1e-2)
    model.fit(x, y, epochs=2, verbose=0, callbacks=[ModelCheckpoint(tmp_path / "run.safetensors")])
    with safe_open(str(tmp_path / "run.safetensors"), "np") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    extra = json.loads(meta["ember.extra"])
    fresh = mlp()
    fresh.compile(optimizer="adam", lr=1e-2)
    before = {k: v.cpu().numpy().copy() for k, v in fresh.state_dict().items()}
    for key, value, message in [("fit_seed", "oops", "records fit_seed 'oops', not an int >= 0"),
                                ("fit_seed", -3, "records fit_seed -3"),
                                ("history", {"epoch": [0, 1], "history": {"loss": ["x"]}}, "records a history")]:
        save_file(tensors, str(tmp_path / "bad.safetensors"),
                  metadata={**meta, "ember.extra": json.dumps({**extra, key: value})})
        with pytest.raises(ValueError, match=message):
            fresh.fit(x, y, epochs=3, verbose=0, resume_from=tmp_path / "bad.safetensors")
        for k, v in fresh.state_dict().items():
            np.testing.assert_array_equal(v.cpu().numpy(), before[k], err_msg=k)
        assert fresh._compiled.optimizer.state == {}
    # a bad argument beside a good checkpoint: refused before the checkpoint loads too
    for kwargs, error in [({"batch_size": 0}, ValueError), ({"verbose": 5}, ValueError)]:
        with pytest.raises(error):
            fresh.fit(x, y, epochs=3, resume_from=tmp_path / "run.safetensors", **kwargs)
        for k, v in fresh.state_dict().items():
            np.testing.assert_array_equal(v.cpu().numpy(), before[k], err_msg=k)


def _scheduled_run(path, epochs, resume=False):
    """An MLP under a step schedule, a plateau schedule (stepped on a scripted val_loss) and early
    stopping, checkpointed every epoch -- with the checkpoint listed first, before the callbacks
    whose state it must hold."""
    from ember.optim import lr_scheduler

    x, y = blobs()
    ember.manual_seed(3)
    model = mlp(dropout=0.2)
    opt = ember.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.compile(optimizer=opt)
    plateau = lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5)
    scripted = Scripted([1.0, 0.5, 0.6, 0.7, 0.4, 0.45])
    stop = EarlyStopping(patience=3)
    callbacks = [ModelCheckpoint(path), scripted, LearningRateScheduler(lr_scheduler.StepLR(opt, 1, 0.8)),
                 LearningRateScheduler(plateau), stop]
    history = model.fit(x, y, batch_size=16, epochs=epochs, verbose=0, callbacks=callbacks, seed=5,
                        resume_from=path if resume else None)
    return model, history, plateau, stop


def test_a_resume_continues_the_schedules_and_early_stopping(tmp_path):
    """Schedulers set by epoch, a ReduceLROnPlateau's counts and EarlyStopping's wait continue
    where the checkpoint was written: the resumed run's rates and weights are the uninterrupted
    run's."""
    straight, h6, plateau6, stop6 = _scheduled_run(tmp_path / "a.safetensors", 6)
    _scheduled_run(tmp_path / "b.safetensors", 3)
    resumed, h3, plateau3, stop3 = _scheduled_run(tmp_path / "b.safetensors", 6, resume=True)
    assert h3.history["lr"] == h6.history["lr"]
    assert h6.history["lr"][1] == pytest.approx(0.1 * 0.8) and len(set(h6.history["lr"])) == 6
    for (k, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        np.testing.assert_array_equal(a.cpu().numpy(), b.cpu().numpy(), err_msg=k)
    assert plateau3.state_dict() == plateau6.state_dict()
    assert (stop3.wait, stop3.best, stop3.best_epoch) == (stop6.wait, stop6.best, stop6.best_epoch) == (1, 0.4, 4)


def test_a_resume_refuses_callback_states_that_do_not_fit(tmp_path):
    """A recorded callback state is checked against the callback before anything loads."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    _scheduled_run(tmp_path / "run.safetensors", 2)
    with safe_open(str(tmp_path / "run.safetensors"), "np") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    extra = json.loads(meta["ember.extra"])
    # a schedule of the epoch keeps nothing: its place follows from the epoch
    assert set(extra["callbacks"]) == {"ModelCheckpoint[0]", "LearningRateScheduler[1]", "EarlyStopping[0]"}
    plateau = extra["callbacks"]["LearningRateScheduler[1]"]
    for key, state in [("EarlyStopping[0]", {"monitor": "loss", "best": 0.5, "wait": 0, "best_epoch": 1}),
                       ("EarlyStopping[0]", {"monitor": "val_loss", "best": None, "wait": 0, "best_epoch": 1}),
                       ("EarlyStopping[0]", {"monitor": "val_loss", "best": 0.5, "wait": 1.5, "best_epoch": 1}),
                       ("LearningRateScheduler[1]", {**plateau, "best": "low"}),
                       ("LearningRateScheduler[1]", {**plateau, "factor": 0.5}),
                       ("LearningRateScheduler[0]", [1, 2])]:
        save_file(tensors, str(tmp_path / "bad.safetensors"), metadata={
            **meta, "ember.extra": json.dumps({**extra, "callbacks": {**extra["callbacks"], key: state}})})
        with pytest.raises(ValueError, match=rf"bad.safetensors records a state for {re.escape(key)} that does not"):
            _scheduled_run(tmp_path / "bad.safetensors", 4, resume=True)


def test_chained_epoch_schedules_apply_each_factor_once():
    """LinearLR warm-up with ExponentialLR, each in its callback: PyTorch's rates."""
    from ember.optim import lr_scheduler

    x, y = blobs()
    model = mlp()
    opt = ember.optim.SGD(model.parameters(), lr=0.9)
    model.compile(optimizer=opt)
    warm, decay = lr_scheduler.LinearLR(opt, 1 / 3, total_iters=3), lr_scheduler.ExponentialLR(opt, 0.5)
    history = model.fit(x, y, epochs=3, verbose=0, callbacks=[LearningRateScheduler(warm), LearningRateScheduler(decay)])
    assert history.history["lr"] == pytest.approx([0.3, 0.25, 0.175])


def _one_cycle_run(path, epochs, resume=False):
    from ember.optim import lr_scheduler

    x, y = blobs(n=32)
    ember.manual_seed(1)
    model = mlp()
    opt = ember.optim.SGD(model.parameters(), lr=0.1)
    model.compile(optimizer=opt)
    cycle = lr_scheduler.OneCycleLR(opt, 1.0, total_steps=epochs * 2)
    history = model.fit(x, y, batch_size=16, epochs=epochs, verbose=0, seed=2, resume_from=path if resume else None,
                        callbacks=[LearningRateScheduler(cycle, interval="batch"), ModelCheckpoint(path)])
    return history, cycle


def test_a_resume_follows_the_schedule_it_is_given(tmp_path):
    """A schedule rebuilt for a longer run (OneCycleLR over 8 steps, the checkpoint written under
    one of 4) runs as built: its arguments are the new run's, its place the checkpoint's step."""
    _one_cycle_run(tmp_path / "run.safetensors", 2)
    resumed, cycle = _one_cycle_run(tmp_path / "run.safetensors", 4, resume=True)
    straight, _ = _one_cycle_run(tmp_path / "straight.safetensors", 4)
    assert cycle.total_steps == 8 and cycle.last_epoch == 7
    assert resumed.history["lr"][2:] == pytest.approx(straight.history["lr"][2:])


def test_a_callback_state_json_cannot_hold_is_left_out_with_a_warning(tmp_path):
    class Ema(Callback):
        def state_dict(self):
            return {"average": np.zeros(3)}

        def load_state_dict(self, state):
            raise AssertionError("never stored, never restored")

    x, y = blobs()
    model = mlp()
    model.compile()
    with pytest.warns(UserWarning, match=r"the state of callback Ema\[0\] is left out"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[Ema(), ModelCheckpoint(tmp_path / "m.safetensors")])
    model.fit(x, y, epochs=2, verbose=0, callbacks=[Ema()], resume_from=tmp_path / "m.safetensors")


def test_no_samples_and_no_epochs_are_errors_not_zero_losses():
    model = mlp()
    model.compile(optimizer="adam", lr=1e-2)
    empty = DataLoader(TensorDataset(ember.zeros((0, 6)), ember.zeros(0, dtype=np.int64)))
    with pytest.raises(ValueError, match="fit: the training data holds no samples"):
        model.fit(empty, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="evaluate: the data holds no samples"):
        model.evaluate(empty)
    x, y = blobs(8)
    small = DataLoader(TensorDataset(ember.tensor(x), ember.tensor(y)), batch_size=16, drop_last=True)
    with pytest.raises(ValueError, match="holds no samples"):
        model.fit(small, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="fit: the validation data holds no samples"):
        model.fit(x, y, epochs=1, verbose=0, validation_data=small)
    with pytest.raises(ValueError, match="initial_epoch=0 leaves no epoch to train before epochs=0"):
        model.fit(x, y, epochs=0, verbose=0)


def test_steps_per_epoch_ends_each_epoch_early():
    x, y = blobs()
    model = mlp()
    model.compile(optimizer="sgd", lr=0.0)
    seen = []

    class Steps(ember.callbacks.Callback):
        def on_train_batch_end(self, step, logs=None):
            seen.append(step)

    model.fit(x, y, batch_size=4, epochs=2, steps_per_epoch=3, verbose=0, callbacks=[Steps()])
    assert seen == [0, 1, 2, 0, 1, 2]
    with pytest.raises(ValueError, match="steps_per_epoch must be an int >= 1"):
        model.fit(x, y, steps_per_epoch=0, verbose=0)


def test_checkpoint_round_trip_and_errors(device, tmp_path):
    ember.manual_seed(0)
    x, y = blobs()
    model = mlp()
    model.compile(optimizer="adam", lr=1e-2)
    model.fit(x, y, epochs=2, verbose=0)
    opt = model._compiled.optimizer
    path = ember.save(tmp_path / "m.safetensors", model, opt, epoch=2, config={"name": "mlp", "sizes": (6, 3)})
    other = mlp()
    other_opt = ember.optim.Adam(other.parameters(), lr=5.0)
    info = ember.load(path, other, other_opt)
    assert info.epoch == 2 and info.config == {"name": "mlp", "sizes": [6, 3]}
    values = sum(p.numel() for p in model.parameters())
    assert repr(info).startswith(f"Checkpoint(path={str(path)!r}, epoch=2, config keys=['name', 'sizes']")
    assert f"model_state={len(model.state_dict())} arrays, {values:,} values" in repr(info) and len(repr(info)) < 300
    for (k, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        np.testing.assert_array_equal(a.cpu().numpy(), b.cpu().numpy(), err_msg=k)
    assert other_opt.param_groups[0]["lr"] == 1e-2
    mine, theirs = opt.state_dict()["state"], other_opt.state_dict()["state"]
    assert mine.keys() == theirs.keys() and all(mine[i]["step"] == theirs[i]["step"] for i in mine)
    np.testing.assert_array_equal(mine[0]["exp_avg"], theirs[0]["exp_avg"])
    # The file holds host arrays: the model's weights land on its device; model_state goes to
    # map_location (as read without one).
    assert all(p.device == other[0].weight.device for p in other.parameters())
    assert all(isinstance(v, np.ndarray) for v in info.model_state.values())
    placed = ember.load(path, map_location=device).model_state
    assert placed.keys() == model.state_dict().keys()
    for k, v in placed.items():
        assert ember.backend.device_of(v).name == device
        np.testing.assert_array_equal(ember.Tensor(v).cpu().numpy(), model.state_dict()[k].cpu().numpy())
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        ember.load(path, map_location="tpu")
    # Module.save / load: weights only.
    model.save(tmp_path / "w.safetensors")
    fresh = mlp()
    fresh.load(tmp_path / "w.safetensors")
    np.testing.assert_array_equal(fresh[0].weight.detach().cpu().numpy(), model[0].weight.detach().cpu().numpy())
    # A different architecture: every mismatch listed.
    with pytest.raises(ValueError, match=r"missing keys: 2\.weight, 2\.bias.*unexpected keys: 3\.bias, 3\.weight"
                                         r".*wrong shapes: 0\.weight: expected shape \(8, 6\), got \(16, 6\)"):
        nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).load(tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match="holds the state of a Adam optimizer, not of a SGD"):
        ember.load(path, mlp(), ember.optim.SGD(mlp().parameters(), lr=0.1))
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        ember.load(tmp_path / "missing.safetensors", model)
    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(ValueError, match="is not a readable safetensors file"):
        ember.load(tmp_path / "junk.safetensors", model)
    import safetensors.numpy

    safetensors.numpy.save_file({"a": np.zeros(3, np.float32)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ValueError, match="is not an Ember checkpoint"):
        ember.load(tmp_path / "plain.safetensors", model)
    with pytest.raises(ValueError, match="epoch must be an int >= 0"):
        ember.save(tmp_path / "x.safetensors", model, epoch=-1)


def test_a_crash_mid_save_keeps_the_previous_checkpoint(device, tmp_path, monkeypatch):
    model = mlp()
    path = tmp_path / "c.safetensors"
    model.save(path)
    before = path.read_bytes()

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    model[0].weight.detach()[...] = 7.0
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]  # the temporary file is gone


CTRL_C_SCRIPT = r"""
import json, os, signal
import numpy as np
import ember
from ember import nn
from ember.callbacks import Callback

rng = np.random.default_rng(int(os.environ["SEED"]))
x = rng.standard_normal((128, 6)).astype(np.float32)
y = rng.integers(0, 3, 128)
model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
model.compile(optimizer="adam", lr=1e-2)


def custom_handler(signum, frame):
    pass


results = {}
for name, handler, presses in [("default", signal.default_int_handler, 1), ("custom", custom_handler, 1),
                               ("twice", signal.default_int_handler, 2)]:
    # The handler before fit: Python's own (as in a terminal, whatever this process inherited)
    # or one of the user's; fit must put it back.
    signal.signal(signal.SIGINT, handler)
    steps = []

    class Interrupt(Callback):
        def on_train_batch_end(self, batch, logs=None):
            steps.append(batch)
            if batch == 2:
                for _ in range(presses):
                    os.kill(os.getpid(), signal.SIGINT)

    try:
        history = model.fit(x, y, batch_size=16, epochs=3, callbacks=[Interrupt()], verbose=0)
        outcome = {"interrupted": history.interrupted, "epochs": history.epoch}
    except KeyboardInterrupt:
        outcome = {"raised": True}
    outcome.update(steps=steps, restored=signal.getsignal(signal.SIGINT) is handler)
    results[name] = outcome
print(json.dumps(results))
"""


def test_ctrl_c_stops_after_the_current_step(rng):
    # In a child of its own, so that the result does not depend on how pytest was started (a
    # worker thread, a terminal or none, a parent that ignores SIGINT).
    env = {**os.environ, "SKBUILD_EDITABLE_VERBOSE": "0", "SEED": str(int(rng.integers(2**31)))}
    result = subprocess.run([sys.executable, "-c", CTRL_C_SCRIPT], capture_output=True, text=True, env=env,
                            stdin=subprocess.DEVNULL, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    for name in ("default", "custom"):  # one Ctrl-C: the step finishes, fit returns, nothing recorded
        assert got[name] == {"interrupted": True, "epochs": [], "steps": [0, 1, 2], "restored": True}, got
    assert got["twice"] == {"raised": True, "steps": [0, 1, 2], "restored": True}, got  # a second: at once


def run_cli(*args, cwd):
    env = {**os.environ, "SKBUILD_EDITABLE_VERBOSE": "0"}
    return subprocess.run([sys.executable, "-m", "ember", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300, check=False)


def test_ember_train_and_evaluate_commands(device, tmp_path):
    result = run_cli("train", "--epochs", "1", "--out", "digits.safetensors", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "test accuracy" in out and "macro precision" in out and "samples/s" in out
    assert f"checkpoint: {tmp_path / 'digits.safetensors'}" in out
    accuracy = float(out.split("test accuracy ")[1].split()[0])
    assert accuracy > 0.5  # one epoch already learns most digits
    result = run_cli("evaluate", "digits.safetensors", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "macro avg" in result.stdout and f"test accuracy {accuracy:.4f}" in result.stdout
    # --resume continues from the checkpoint's epoch.
    result = run_cli("train", "--epochs", "2", "--verbose", "2", "--resume", "digits.safetensors", "--out",
                     "digits.safetensors", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "epoch 2/2" in result.stdout and "epoch 1/2" not in result.stdout
    result = run_cli("train", "--epochs", "2", "--resume", "digits.safetensors", "--out", "again.safetensors",
                     cwd=tmp_path)
    assert result.returncode == 2 and "nothing is left to train: pass epochs > 2" in result.stderr
    # (The default job, `ember train`, runs with the README's commands in test_readme.py.)
    result = run_cli("train", "--dataset", "cifar10", cwd=tmp_path)
    assert result.returncode != 0 and "needs --data-dir" in result.stderr
    result = run_cli("train", "--epochs", "0", cwd=tmp_path)
    assert result.returncode != 0 and "expected a positive integer" in result.stderr
    result = run_cli("evaluate", "nothing.safetensors", cwd=tmp_path)
    assert result.returncode != 0 and "no checkpoint at" in result.stderr


def test_cifar10_example_runs_on_synthetic_data(device, tmp_path):
    script = os.path.join(os.path.dirname(__file__), "..", "examples", "cifar10_cnn.py")
    env = {**os.environ, "SKBUILD_EDITABLE_VERBOSE": "0"}
    result = subprocess.run([sys.executable, script, "--epochs", "1", "--out", str(tmp_path / "c.safetensors")],
                            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert "synthetic" in result.stdout and "test accuracy" in result.stdout and "macro avg" in result.stdout
    assert (tmp_path / "c.safetensors").is_file()
    # Its checkpoint evaluates as it is: the architecture and the input scaling are recorded.
    result = run_cli("evaluate", str(tmp_path / "c.safetensors"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Sequential(Conv2d, ReLU, MaxPool2d, Flatten, Linear, ReLU, Linear) on the synthetic" in result.stdout
    assert "does not record" not in result.stderr


class FakeTerminal:
    """A text stream that says it is a terminal (as sys.stdout is in a console)."""

    def __init__(self):
        self.parts = []

    def write(self, text):
        self.parts.append(text)

    def flush(self):
        pass

    def isatty(self):
        return True

    @property
    def text(self):
        return "".join(self.parts)


def test_progress_bar_on_a_terminal_and_lines_elsewhere(device):
    from ember.callbacks import ProgressLogger

    x, y = blobs(64)
    model = mlp()
    model.compile(optimizer="adam", lr=1e-2, metrics=["accuracy"])
    terminal = FakeTerminal()
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, validation_data=(x, y),
              callbacks=[ProgressLogger("auto", file=terminal)])
    assert "epoch 1/2" in terminal.text and "epoch 2/2" in terminal.text and "4/4" in terminal.text
    assert "val_accuracy" in terminal.text and "samples/s" in terminal.text

    class Pipe(FakeTerminal):
        def isatty(self):
            return False

    pipe = Pipe()
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[ProgressLogger("auto", file=pipe)])
    lines = pipe.text.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("epoch 1/2 - ") and "loss" in lines[0] and "samples/s" in lines[1]
    with pytest.raises(ValueError, match="verbose must be 'auto', 0, 1 or 2"):
        model.fit(x, y, verbose=3)


def test_quantized_digits_cnn_keeps_its_accuracy(tmp_path):
    # The bundled digits CNN: int8 loses at most 0.5 accuracy points, int4 at most 1.5; the
    # quantized checkpoints evaluate through the command line as well.
    result = run_cli("train", "--verbose", "0", "--out", "cnn.safetensors", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for bits, allowed in ((8, 0.5), (4, 1.5)):
        result = run_cli("quantize", "cnn.safetensors", "--bits", str(bits), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        line = next(s for s in result.stdout.splitlines() if "accuracy:" in s)
        before, after = float(line.split()[1]), float(line.split()[3])
        assert 100 * (before - after) <= allowed, line
        assert f"cnn.int{bits}.safetensors" in result.stdout and "smaller" in result.stdout
        result = run_cli("evaluate", f"cnn.int{bits}.safetensors", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert f"(int{bits})" in result.stdout and f"test accuracy {after:.4f}" in result.stdout
    result = run_cli("quantize", "cnn.int8.safetensors", cwd=tmp_path)
    assert result.returncode != 0 and "already quantized" in result.stderr
