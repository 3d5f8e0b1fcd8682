"""``ember train --model gpt`` and ``ember generate`` called in-process on a tiny model: it
learns (validation loss well below the uniform guess), its checkpoint carries the tokenizer,
resumes, generates reproducibly (quantized too), and every bad input is a one-line message."""

import math
import re

import pytest

import ember
from ember import cli

TINY = ["--layers", "1", "--width", "32", "--heads", "2", "--block-size", "16", "--batch-size", "16",
        "--steps-per-epoch", "40", "--verbose", "0"]


def run(capsys, *argv):
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny GPT trained for two epochs on the shipped text, and what ember train printed."""
    import contextlib
    import io

    path = tmp_path_factory.mktemp("gpt") / "g.safetensors"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(["train", "--model", "gpt", "--epochs", "2", "--out", str(path), *TINY])
    return code, out.getvalue(), path


def test_train_learns_and_records_the_tokenizer(trained):
    code, out, path = trained
    assert code == 0, out
    loss = float(out.split("validation loss ")[1].split()[0])
    assert loss < 0.85 * math.log(65)  # the uniform guess over the 65 characters is log 65 = 4.17
    assert "a sample (ember generate" in out and out.rstrip().count("\n") > 4
    config = ember.checkpoint.read_header(path)[1]
    assert '"chars": "\\n !$&' in config["ember.config"] and '"model": "gpt"' in config["ember.config"]
    model = ember.load_model(path)
    assert type(model).__name__ == "GPT" and model.block_size == 16 and len(model.blocks) == 1


def test_generate_is_reproducible_and_runs_quantized(capsys, trained):
    path = str(trained[2])
    code, first, err = run(capsys, "generate", path, "--prompt", "ROMEO:", "--tokens", "40", "--seed", "3")
    assert code == 0, err
    text = first.splitlines()
    assert first.startswith("ROMEO:") and "40 characters in" in first
    assert run(capsys, "generate", path, "--prompt", "ROMEO:", "--tokens", "40", "--seed", "3")[1].split("(40")[0] \
        == first.split("(40")[0]
    assert len("\n".join(text[:-1])) == len("ROMEO:") + 40
    greedy = run(capsys, "generate", path, "--prompt", "ROMEO:", "--tokens", "30", "--temperature", "0")[1]
    code, quantized, err = run(capsys, "generate", path, "--prompt", "ROMEO:", "--tokens", "30", "--temperature", "0",
                               "--bits", "4")
    assert code == 0, err
    assert quantized.startswith("ROMEO:") and len(quantized.split("(30")[0]) == len(greedy.split("(30")[0])


def test_quantize_scores_it_on_its_validation_text(capsys, trained, tmp_path):
    out = tmp_path / "g4.safetensors"
    code, text, err = run(capsys, "quantize", str(trained[2]), "--bits", "4", "--out", str(out))
    assert code == 0, err
    before, after = (float(v) for v in re.search(r"loss: ([0-9.]+) -> ([0-9.]+)", text).groups())
    assert "windows of its validation text" in text and abs(after - before) < 0.1 * before
    model = ember.load_model(out)
    assert type(model.head).__name__ == "QuantLinear"
    code, text, err = run(capsys, "generate", str(out), "--prompt", "ROMEO:", "--tokens", "20")
    assert code == 0 and text.startswith("ROMEO:"), err
    # The codebook format: 4.5 bits per weight, scored the same way, named in the file's name.
    code, text, err = run(capsys, "quantize", str(trained[2]), "--bits", "4", "--codebook")
    assert code == 0, err
    coded = trained[2].with_suffix(".int4cb.safetensors")
    assert "int4 (codebook, 4.5 bits per weight)" in text and str(coded.resolve()) in text
    cb_after = float(re.search(r"loss: [0-9.]+ -> ([0-9.]+)", text).group(1))
    assert abs(cb_after - before) < 0.1 * before
    assert ember.load_model(coded).head.codebook
    code, text, err = run(capsys, "generate", str(trained[2]), "--bits", "4", "--codebook", "--tokens", "20")
    assert code == 0 and "20 characters in" in text, err


def test_resume_continues_the_run(capsys, trained, tmp_path):
    out = tmp_path / "more.safetensors"
    code, text, err = run(capsys, "train", "--model", "gpt", "--epochs", "3", "--resume", str(trained[2]),
                          "--out", str(out), *TINY)
    assert code == 0, err
    assert out.exists() and "validation loss" in text
    assert ember.checkpoint.read_header(out)[1]["ember.epoch"] == "3"


def test_bad_input_is_a_one_line_message(capsys, trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = str(trained[2])
    (tmp_path / "short.txt").write_text("to be or not")
    (tmp_path / "long.txt").write_text("to be or not to be, that is the question. " * 40)
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 ".encode("latin-1") * 100)
    ember.nn.Linear(3, 2).save(tmp_path / "linear.safetensors")
    cases = [
        (["train", "--model", "gpt", "--text", str(tmp_path / "none.txt")], "--text"),
        (["train", "--model", "gpt", "--text", str(tmp_path / "short.txt"), *TINY], "12 characters are too few"),
        (["train", "--model", "gpt", "--text", str(tmp_path / "latin1.txt")], "not UTF-8 text"),
        (["train", "--model", "gpt", "--dataset", "digits"], "--dataset digits is an image data set"),
        (["train", "--model", "gpt", "--text", str(tmp_path / "long.txt"), "--out", str(tmp_path / "long.txt"),
          *TINY], "long.txt is the input"),
        (["train", "--model", "gpt", "--width", "30", "--heads", "4", "--epochs", "1"],
         "--width 30 must be a multiple of --heads 4"),
        (["train", "--layers", "2"], "--layers: only with --model gpt"),
        (["train", "--model", "gpt", "--resume", str(tmp_path / "linear.safetensors"), *TINY],
         "does not hold a GPT trained on shakespeare"),
        (["generate", str(tmp_path / "linear.safetensors")], "not a GPT checkpoint"),
        (["generate", path, "--prompt", "caf\xe9"], "--prompt: CharTokenizer: '\xe9' is not in the vocabulary"),
        (["generate", path, "--prompt", ""], "--prompt: give at least one character"),
        (["quantize", path, "--text", str(tmp_path / "short.txt")], "too short for windows of the checkpoint's 16"),
        (["quantize", str(tmp_path / "linear.safetensors"), "--text", "x.txt"], "--text: only for a GPT checkpoint"),
        (["quantize", path, "--codebook"], "--codebook: an int4 format, for --bits 4 (got --bits 8)"),
        (["generate", path, "--codebook"], "--codebook: an int4 format, for --bits 4"),
    ]
    for argv, message in cases:
        code, _, err = run(capsys, *argv)
        assert code == 2 and message in err and err.count("\n") == 1, (argv, err)
    with pytest.raises(SystemExit):
        cli.main(["generate", path, "--tokens", "0"])
    assert "expected a positive integer" in capsys.readouterr().err
    assert not list(tmp_path.glob("ember-*"))  # no checkpoint was written by a failed run


def test_a_text_of_ones_own(capsys, tmp_path):
    """--text trains on a file; its checkpoint names it, and quantizing it needs the file again."""
    (tmp_path / "mine.txt").write_text(ember.datasets.shakespeare()[:20_000], encoding="utf-8")
    path = tmp_path / "mine.safetensors"
    code, out, err = run(capsys, "train", "--model", "gpt", "--text", str(tmp_path / "mine.txt"), "--epochs", "1",
                         "--out", str(path), *TINY[:-4], "--steps-per-epoch", "5", "--verbose", "0")
    assert code == 0, err
    assert "training gpt on mine.txt: 20000 characters" in out
    code, _, err = run(capsys, "quantize", str(path), "--bits", "8")
    assert code == 2 and "was trained on 'mine.txt': pass --text FILE to score it" in err
    code, out, err = run(capsys, "quantize", str(path), "--bits", "8", "--text", str(tmp_path / "mine.txt"),
                         "--out", str(tmp_path / "q.safetensors"))
    assert code == 0 and "loss:" in out, err
