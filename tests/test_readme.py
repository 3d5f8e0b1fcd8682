"""The README's Python examples run as written."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the examples write checkpoints into the working directory
    namespace = {}
    exec("import numpy as np\nimport ember\n", namespace)  # noqa: S102 (the README's own code)
    for block in BLOCKS[: index + 1]:  # later examples may use names defined by earlier ones
        exec(block, namespace)  # noqa: S102


def test_readme_has_examples():
    assert len(BLOCKS) >= 4
