"""The README's Python examples run as written."""

import pathlib
import re

import numpy as np
import pytest
from cifar_files import write_cifar

import ember

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, capsys, tmp_path, monkeypatch):
    """Each block alone, as a reader pastes it, in a folder of its own, with a small CIFAR-10 where
    ``ember.keras.datasets`` looks for it."""
    if '"cuda"' in BLOCKS[index] and ember.backend.cuda_status() != "available":
        pytest.skip(f"the example runs on a GPU: {ember.backend.cuda_status()}")
    monkeypatch.chdir(tmp_path)  # the examples write checkpoints into the working directory
    write_cifar(tmp_path / "data" / "cifar-10-batches-py", np.random.default_rng(0), n=8)
    monkeypatch.setenv("EMBER_DATA", str(tmp_path / "data"))
    exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), {})  # noqa: S102 (the README's own code)
    out = capsys.readouterr().out
    if "print(" in BLOCKS[index]:  # what it shows the reader is there, and holds no NaN
        assert out.strip(), f"README block {index} printed nothing"
        assert not re.search(r"\bnan\b", out, re.I), f"README block {index} printed NaN:\n{out}"


def test_readme_has_examples():
    assert len(BLOCKS) >= 4


# --------------------------------------------------------------------------- the shell blocks

SH_BLOCKS = re.findall(r"```sh\n(.*?)```", README.read_text(), re.S)
ROOT = README.parent


def sh_commands():
    """Every command of the README's sh blocks: continuation lines joined, `a && b` split."""
    commands = []
    for block in SH_BLOCKS:
        for line in block.replace("\\\n", " ").splitlines():
            commands += [part.strip() for part in line.split("&&") if part.strip()]
    return commands


def strip_comment(command):
    return command.split("  #")[0].strip()


def test_ci_runs_exactly_the_readme_test_command():
    test_commands = [b.strip() for b in SH_BLOCKS if "&& python -m pytest" in b]  # install, then test
    assert len(test_commands) == 1, test_commands
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_commands[0] in ci, f".ci/run does not run README's test command {test_commands[0]!r}"


def optional_dependencies():
    """The extras pyproject.toml declares (its [project.optional-dependencies] keys)."""
    text = (ROOT / "pyproject.toml").read_text()
    section = text.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    return set(re.findall(r"^([A-Za-z][\w-]*)\s*=", section, re.M))


def test_pip_commands_name_extras_the_package_has():
    extras = optional_dependencies()
    assert "reference" in extras and "test" in extras
    for command in sh_commands():
        for group in re.findall(r"\.\[([\w,-]+)\]", command):
            assert set(group.split(",")) <= extras, f"{command!r} names an extra that does not exist ({extras})"


def test_benchmark_commands_name_files_that_exist():
    named = {p for c in sh_commands() for p in re.findall(r"\bbenchmarks/[\w/]+\.py", c)}
    assert named, "the README names its benchmark files"
    for path in named:
        assert (ROOT / path).is_file(), path


def ember_executable(env):
    """The `ember` console script as a user's shell finds it: on PATH (the directory of this
    Python first, as an activated environment puts it)."""
    import shutil

    path = shutil.which("ember", path=env["PATH"])
    assert path is not None, f"the `ember` console script is not installed on PATH ({env['PATH']})"
    return path


def write_fake_datasets(home, rng):
    """Small stand-ins for the downloaded CIFAR-10 and MNIST files, where the README's commands
    look for them (~/data/...)."""
    import pickle
    import struct

    cifar = home / "data" / "cifar-10-batches-py"
    cifar.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (24, 3072)).astype(np.uint8),
                 b"labels": [int(v) for v in rng.integers(0, 10, 24)]}
        (cifar / name).write_bytes(pickle.dumps(batch, protocol=2))
    mnist = home / "data" / "mnist"
    mnist.mkdir(parents=True)
    for prefix, n in (("train", 80), ("t10k", 30)):
        images = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        (mnist / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">4I", 0x803, n, 28, 28) + images.tobytes())
        (mnist / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">2I", 0x801, n) + labels.tobytes())


def test_the_ember_commands_run_through_the_console_script(tmp_path, rng):
    # Every `ember ...` line of the README, in order, through the installed console script and
    # a shell (so ~ and the comments are the shell's), with the data sets it names faked.
    import os
    import subprocess
    import sys

    # A server the README starts in the background (`ember serve ... &`) runs until stopped: the
    # service's own tests start and stop it (tests/test_serve.py).
    commands = [c for c in sh_commands() if c.startswith("ember ") and not strip_comment(c).endswith("&")]
    assert "ember train" in [strip_comment(c) for c in commands] and len(commands) >= 8
    home = tmp_path / "home"
    work = tmp_path / "work"
    work.mkdir()
    write_fake_datasets(home, rng)
    env = {**os.environ, "HOME": str(home), "SKBUILD_EDITABLE_VERBOSE": "0",
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    executable = ember_executable(env)
    assert os.path.basename(executable) == "ember" and os.access(executable, os.X_OK)
    outputs = {}
    for command in dict.fromkeys(commands):  # in order, once each
        # A guard against a hang only: the GPT's default training takes about 3 minutes on 2 cores
        # with AVX-512 and about 6 on 2 AVX2-only cores.
        result = subprocess.run(command, shell=True, capture_output=True, text=True, cwd=work, env=env,
                                timeout=900, check=False)
        assert result.returncode == 0, f"{command!r} failed with {result.returncode}:\n{result.stderr[-3000:]}"
        outputs[strip_comment(command)] = result.stdout
    # What the README promises of them.
    default = outputs["ember train"]
    assert float(default.split("test accuracy ")[1].split()[0]) >= 0.97 and "epoch 60/60" in default
    for name in ("ember-digits-cnn.safetensors", "ember-digits-cnn.int8.safetensors", "cifar.safetensors",
                 "ember-mnist-mlp.safetensors"):
        assert (work / name).is_file(), (name, sorted(p.name for p in work.iterdir()))
    resumed = next(out for cmd, out in outputs.items() if "--resume cifar.safetensors" in cmd)
    assert "epoch 20/20" in resumed and "epoch 10/20" not in resumed  # it went on from epoch 10
    evaluated = next(out for cmd, out in outputs.items() if cmd.startswith("ember evaluate cifar"))
    assert "macro avg" in evaluated and "test accuracy" in evaluated
    quantized = next(out for cmd, out in outputs.items() if cmd.startswith("ember evaluate ember-digits-cnn.int8"))
    assert "(int8)" in quantized and float(quantized.split("test accuracy ")[1].split()[0]) >= 0.95
    gpt = outputs["ember train --model gpt"]  # the README states 1.74 on 2 cores
    assert float(gpt.split("validation loss ")[1].split()[0]) < 1.8 and "epoch 4/4" in gpt
    quantized_gpt = next(out for cmd, out in outputs.items() if cmd.startswith("ember quantize ember-shakespeare"))
    before, after = (float(v) for v in re.search(r"loss: ([0-9.]+) -> ([0-9.]+)", quantized_gpt).groups())
    assert after - before < 0.05, quantized_gpt
    assert outputs[next(c for c in outputs if c.startswith("ember generate"))].startswith("ROMEO:")
    info = outputs["ember info"]
    assert re.search(r"^isa\s+(generic|avx2|avx512|avx512_bf16|amx)$", info, re.M), info
    assert re.search(r"^threads\s+\d+$", info, re.M), info
