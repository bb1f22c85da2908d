"""The README's ```python examples run as they are written (```py marks fragments that need context)."""
import re
from pathlib import Path

import pytest

import fastnet

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S) if README.exists() else []


@pytest.mark.skipif(not README.exists(), reason="README.md is not beside the tests (installed-wheel run)")
@pytest.mark.parametrize("index", range(len(BLOCKS)) if BLOCKS else [0])
def test_readme_python_block_runs(index, tmp_path, monkeypatch):
    assert BLOCKS, "the README has no Python examples"
    monkeypatch.chdir(tmp_path)
    code = BLOCKS[index]
    with fastnet.threads(1):
        exec(compile(code, f"README.md python block {index}", "exec"), {"__name__": "__readme__"})
