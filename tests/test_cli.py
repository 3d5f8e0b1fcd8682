"""The `ember` command's entry point called in-process (the console script and `python -m ember`
run as programs in test_readme.py and test_training.py): every subcommand on the synthetic data
set, the numbers its reports print agreeing with one another, and its argument errors."""

import contextlib
import io
import re
import sys

import pytest

import ember
from ember import cli, nn
from ember.bench import cli as bench_cli


def run(capsys, *argv):
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(autouse=True)
def reports_to_sys_stdout(monkeypatch):
    """The reports go to the sys.stdout of the moment (so capsys sees them), whatever stream the
    functions took as their default (test_output_follows_sys_stdout checks that separately)."""
    for fn in (cli.train, cli.evaluate, cli.quantize, bench_cli.bench, bench_cli.profile):
        defaults = fn.__defaults__
        if defaults and hasattr(defaults[-1], "write"):  # out=<a stream chosen at import>
            monkeypatch.setattr(fn, "__defaults__", defaults[:-1] + (_Stdout(),))


class _Stdout:
    def write(self, text):
        return sys.stdout.write(text)

    def flush(self):
        sys.stdout.flush()


def test_output_follows_sys_stdout(monkeypatch):
    # Embedding the command: contextlib.redirect_stdout must capture what it prints.
    monkeypatch.undo()  # the functions as shipped
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert cli.main(["bench", "gemm", "--shape", "3x4x5", "--rounds", "1", "--quiet"]) == 0
    assert "3x4x5" in buf.getvalue()


def accuracy_in(text):
    return float(re.search(r"test accuracy (\d\.\d+)", text).group(1))


def test_train_evaluate_quantize_on_synthetic_data(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "train", "--dataset", "synthetic", "--model", "mlp", "--epochs", "2", "--verbose",
                         "2", "--lr", "0.002", "--batch-size", "128", "--out", "syn.safetensors")
    assert code == 0, err
    assert "training mlp on synthetic: 2048 training images (3, 32, 32), 512 test images, 10 classes, 2 epochs" in out
    assert "epoch 2/2" in out and f"checkpoint: {tmp_path / 'syn.safetensors'}" in out
    trained = accuracy_in(out)
    code, out, err = run(capsys, "evaluate", "syn.safetensors")
    assert code == 0, err
    mlp = "Sequential(Flatten, Linear, ReLU, Linear, ReLU, Linear)"
    assert f"syn.safetensors: {mlp} on the synthetic test split (512 images)" in out and "macro avg" in out
    assert accuracy_in(out) == trained  # the saved model is the one that was scored
    code, out, err = run(capsys, "quantize", "syn.safetensors", "--bits", "4", "--group-size", "64")
    assert code == 0, err
    assert "quantized 3 Linear layer(s) to int4 (groups of 64)" in out
    before, after = (float(v) for v in re.search(r"accuracy: (\d\.\d+) -> (\d\.\d+)", out).groups())
    assert before == trained
    code, out, err = run(capsys, "evaluate", "syn.int4.safetensors")
    assert code == 0, err
    assert f"{mlp.replace('Linear', 'QuantLinear')} (int4)" in out and accuracy_in(out) == after
    code, out, err = run(capsys, "quantize", "syn.int4.safetensors")
    assert code == 2 and "already quantized (int4)" in err
    code, out, err = run(capsys, "quantize", "syn.safetensors", "--bits", "8", "--group-size", "32")
    assert code == 0, err
    assert "quantized 3 Linear layer(s) to int8 (groups of 32)" in out and "syn.int8g.safetensors" in out
    after = float(re.search(r"accuracy: \d\.\d+ -> (\d\.\d+)", out).group(1))
    code, out, err = run(capsys, "evaluate", "syn.int8g.safetensors")
    assert code == 0, err
    assert accuracy_in(out) == after


def test_info_and_bench(capsys):
    code, out, _ = run(capsys, "info")
    assert code == 0 and re.search(rf"^isa\s+{ember.get_isa()}$", out, re.M)
    assert re.search(rf"^ember\s+{re.escape(ember.__version__)}$", out, re.M)
    code, out, _ = run(capsys, "bench", "gemm", "--shape", "4x5x6", "--shape", "33X17X9", "--rounds", "1", "--quiet")
    assert code == 0
    rows = [line.split() for line in out.splitlines()[1:] if line.startswith("gemm ")]
    assert [r[1] for r in rows] == ["4x5x6", "33x17x9"]
    for r in rows:
        assert r[2] == str(ember.get_num_threads()) and float(r[3]) > 0 and r[-1].endswith("x")


def test_sizes_beyond_memory_are_a_message(capsys):
    # 1 x 2^56 float32 operands: 256 PiB, beyond even a 57-bit address space, found at allocation
    code, _, err = run(capsys, "bench", "gemm", "--shape", f"1x1x{2**56}", "--rounds", "1", "--quiet")
    assert code == 2 and err.startswith("ember bench: out of memory (") and err.count("\n") == 1


def test_bare_ember_prints_usage_and_ctrl_c_exits_130(capsys, monkeypatch):
    code, out, err = run(capsys)
    assert code == 2 and "usage: ember" in err and "train" in err and not out

    def interrupted(args, out=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "train", interrupted)
    code, _, err = run(capsys, "train")
    assert code == 130 and "ember train: interrupted" in err


def test_out_into_a_missing_folder_is_an_error(capsys, tmp_path):
    code, _, err = run(capsys, "train", "--dataset", "synthetic", "--epochs", "1", "--out",
                       str(tmp_path / "no" / "m.safetensors"))
    assert code == 2 and f"the folder {tmp_path / 'no'} does not exist" in err and not (tmp_path / "no").exists()


def test_resume_with_another_model_says_which_it_holds(capsys, tmp_path):
    code, _, err = run(capsys, "train", "--dataset", "synthetic", "--model", "mlp", "--epochs", "1", "--verbose", "0",
                       "--out", str(tmp_path / "m.safetensors"))
    assert code == 0, err
    code, _, err = run(capsys, "train", "--dataset", "synthetic", "--epochs", "2", "--resume",
                       str(tmp_path / "m.safetensors"))
    assert code == 2 and "holds a 'mlp' model trained on 'synthetic', not --model cnn: pass --model mlp" in err


@pytest.mark.parametrize("argv, message", [
    (["bench", "--shape", "8x8"], "shape must be MxKxN with positive integers, got '8x8'"),
    (["bench", "--shape", "8x0x8"], "shape must be MxKxN with positive integers"),
    (["bench", "--quick", "--full"], "not allowed with argument"),
    (["bench", "--threads", "0"], "expected positive integers separated by commas, got '0'"),
    (["profile", "cnn", "--variants", "fp16"], "expected some of fp32, bf16, int8, int4"),
    (["profile", "cnn", "--batch-sizes", "1,x"], "expected positive integers separated by commas"),
    (["train", "--lr", "-1"], "expected a positive number, got '-1'"),
    (["train", "--lr", "inf"], "expected a positive number"),
    (["train", "--epochs", "two"], "expected a positive integer, got 'two'"),
    (["quantize", "x.safetensors", "--bits", "3"], "invalid choice"),
    (["serve", "m.safetensors", "--port", "70000"], "expected a port from 0 to 65535, got '70000'"),
    (["serve", "m.safetensors", "--port", "-1"], "expected a port from 0 to 65535, got '-1'"),
    (["serve", "m.safetensors", "--max-wait-ms", "-1"],
     "argument --max-wait-ms: expected a finite number >= 0, got '-1'"),
    (["serve", "m.safetensors", "--max-wait-ms", "nan"], "argument --max-wait-ms: expected a finite number >= 0"),
    (["serve", "m.safetensors", "--max-wait-ms", "inf"], "argument --max-wait-ms: expected a finite number >= 0"),
])
def test_argument_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_file_errors_are_one_line_messages(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "evaluate", "missing.safetensors")
    assert code == 2 and err.startswith("ember evaluate: ") and "no checkpoint at" in err
    nn.Linear(3, 2).save(tmp_path / "plain.safetensors")  # a model that cannot take the digits
    code, _, err = run(capsys, "quantize", "plain.safetensors")
    assert code == 2 and err.count("\n") == 1 and err.startswith("ember quantize: plain.safetensors: its model "
                                                                  "does not take the digits test images")
    code, _, err = run(capsys, "train", "--dataset", "mnist")  # bad usage: status 2, a message
    assert code == 2 and err == "ember train: --dataset mnist needs --data-dir DIR (where its files are)\n"


def test_options_that_would_do_nothing_are_refused(capsys, tmp_path, monkeypatch):
    """A flag the command would silently ignore is an error naming it, given before any work."""
    monkeypatch.chdir(tmp_path)
    ember.models.cnn((1, 8, 8), 10, filters=4, hidden=8).save(tmp_path / "m.safetensors",
                                                               config={"dataset": "digits", "model": "cnn"})
    for argv, message in [
        (["train", "--data-dir", "/nonexistent"], "--data-dir /nonexistent: --dataset digits reads no files"),
        (["train", "--dataset", "synthetic", "--data-dir", "d"], "--data-dir d: --dataset synthetic reads no files"),
        (["evaluate", "m.safetensors", "--data-dir", "d"], "--data-dir d: --dataset digits reads no files"),
        (["quantize", "m.safetensors", "--bits", "4", "--codebook", "--group-size", "64"],
         "--group-size 64: the codebook format (--codebook) has a scale per 16 inputs"),
    ]:
        code, out, err = run(capsys, *argv)
        assert code == 2 and message in err and err.count("\n") == 1, (argv, err)
        assert "training" not in out, argv
    assert not list(tmp_path.glob("*.int4*"))
    code, _, err = run(capsys, "compress", "m.safetensors")
    assert code == 2 and err == "ember compress: ask for --prune FRACTION, --quantize BITS or both\n"


def test_outputs_never_overwrite_inputs_or_folders(capsys, tmp_path, monkeypatch):
    """An output path that is an input, a folder or in a missing folder is refused before any
    work, as a one-line message naming the option (exit status 2), and the input is untouched."""
    monkeypatch.chdir(tmp_path)
    model = ember.models.cnn((1, 8, 8), 10, filters=4, hidden=8)
    model.save(tmp_path / "m.safetensors", config={"dataset": "digits", "model": "cnn"})
    before = (tmp_path / "m.safetensors").read_bytes()
    for argv, message in [
        (["quantize", "m.safetensors", "--out", "m.safetensors"], "--out m.safetensors is the input m.safetensors"),
        (["quantize", "m.safetensors", "--out", "./m.safetensors"], "is the input m.safetensors"),
        (["export", "m.safetensors", "--onnx", "m.safetensors"], "--onnx m.safetensors is the input"),
        (["compress", "m.safetensors", "--quantize", "8", "--out", "m.safetensors"], "is the input"),
        (["compress", "m.safetensors", "--quantize", "8", "--finetune", "2"], "--finetune: fine-tuning follows "
                                                                               "pruning"),
        (["quantize", "m.safetensors", "--out", str(tmp_path)], "is a folder"),
        (["train", "--epochs", "1", "--out", str(tmp_path)], "is a folder"),
        (["train", "--epochs", "1", "--out", "nowhere/x.safetensors"], "the folder nowhere does not exist"),
    ]:
        code, out, err = run(capsys, *argv)
        assert code == 2 and message in err and err.count("\n") == 1, (argv, err)
        assert "training" not in out, argv  # refused before any work
    assert (tmp_path / "m.safetensors").read_bytes() == before
    code, _, err = run(capsys, "train", "--epochs", "1", "--out", "a{b}.safetensors")  # braces are a name, no field
    assert code == 0 and (tmp_path / "a{b}.safetensors").exists(), err


def test_resume_goes_on_under_the_checkpoints_precision(capsys, tmp_path):
    path = str(tmp_path / "m.safetensors")
    code, out, err = run(capsys, "train", "--dataset", "synthetic", "--model", "mlp", "--epochs", "1", "--verbose", "0",
                         "--precision", "bf16", "--out", path)
    assert code == 0, err
    assert ember.load(path).precision["name"] == "bf16"
    code, out, err = run(capsys, "train", "--dataset", "synthetic", "--model", "mlp", "--epochs", "2", "--verbose", "0",
                         "--resume", path, "--out", path)
    assert code == 0, err
    saved = ember.load(path)
    assert "2 epochs, precision bf16" in out and saved.precision["name"] == "bf16" and saved.epoch == 2
    assert saved.config["precision"] == "bf16"
    with pytest.warns(UserWarning, match="was trained under precision 'bf16' and this run goes on under 'fp32'"):
        code, out, err = run(capsys, "train", "--dataset", "synthetic", "--model", "mlp", "--epochs", "3",
                             "--verbose", "0", "--resume", path, "--precision", "fp32", "--out", path)
    assert code == 0, err
    assert "precision fp32" in out and ember.load(path).precision["name"] == "fp32"
    code, out, err = run(capsys, "train", "--dataset", "synthetic", "--model", "mlp", "--epochs", "1", "--verbose", "0",
                         "--out", str(tmp_path / "new.safetensors"))
    assert code == 0, err
    assert "precision fp32" in out and ember.load(tmp_path / "new.safetensors").precision["name"] == "fp32"
