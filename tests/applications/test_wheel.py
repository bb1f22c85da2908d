"""Packaging: the sdist carries everything the build needs; the build-comparison tool catches differences.

scripts/build_wheel.sh does the full round trip (sdist -> wheel -> auditwheel ->
fresh venv -> this suite); these are the quick checks of its pieces. Tests that
need the source checkout skip when the suite runs from a copy next to an
installed wheel.
"""
import os
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HAVE_SOURCE = os.path.isfile(os.path.join(ROOT, "setup.py")) and os.path.isdir(os.path.join(ROOT, "csrc"))
needs_source = pytest.mark.skipif(not HAVE_SOURCE,
                                  reason="runs only in a source checkout (not from an installed wheel)")


def _compare_tool():
    path = os.path.join(ROOT, "scripts", "compare_builds.py")
    if not os.path.isfile(path):
        pytest.skip("runs only in a source checkout (not from an installed wheel)")
    import importlib.util

    spec = importlib.util.spec_from_file_location("compare_builds", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_source
def test_sdist_holds_every_build_input(tmp_path):
    pytest.importorskip("build")
    pytest.importorskip("Cython")  # --no-isolation builds with this interpreter's setuptools and Cython
    # Build from a copy: setup.py writes (egg-info, cythonized C) next to itself, and the
    # checkout may be compiling at the same time.
    tree = tmp_path / "tree"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "*.so", "*.pyd", "__pycache__", ".venv*", ".hypothesis",
        ".benchmarks", ".pytest_cache"))
    result = subprocess.run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir",
                             str(tmp_path / "dist"), str(tree)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (sdist,) = [p for p in os.listdir(tmp_path / "dist") if p.endswith(".tar.gz")]
    with tarfile.open(tmp_path / "dist" / sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    needed = {"setup.py", "pyproject.toml", "README.md", "fastnet/_kernels.pyx"}
    for folder, suffixes in (("csrc", (".c", ".h")), ("fastnet", (".pxi", ".pxd"))):
        needed |= {f"{folder}/{f}" for f in os.listdir(os.path.join(ROOT, folder)) if f.endswith(suffixes)}
    for dirpath, _, files in os.walk(os.path.join(ROOT, "fastnet")):
        rel = os.path.relpath(dirpath, ROOT)
        needed |= {f"{rel}/{f}" for f in files if f.endswith(".py")}
    missing = sorted(needed - names)
    assert not missing, f"the sdist lacks {missing}"
    assert not any(n.endswith((".so", ".pyd")) for n in names), "a compiled extension leaked into the sdist"


@needs_source
def test_build_script_is_valid_bash():
    script = os.path.join(ROOT, "scripts", "build_wheel.sh")
    result = subprocess.run(["bash", "-n", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _results(path, **arrays):
    np.savez(path, **arrays, **{"time/matmul": np.array([1.2e-3, 1e-3])})  # (median, best) seconds
    return str(path)


def test_compare_accepts_bitwise_equal_builds(tmp_path, capsys):
    tool = _compare_tool()
    x = np.linspace(0, 1, 7, dtype=np.float32)
    tool.compare(_results(tmp_path / "wheel_r.npz", x=x), _results(tmp_path / "source_r.npz", x=x.copy()))
    out = capsys.readouterr().out
    assert "bitwise identical: 1 outputs" in out and "wheel/source" in out


@pytest.mark.parametrize("change", ["one_ulp", "dtype", "missing"])
def test_compare_rejects_any_difference(tmp_path, change):
    tool = _compare_tool()
    x = np.linspace(0, 1, 7, dtype=np.float32)
    if change == "one_ulp":
        other = {"x": np.nextafter(x, np.float32(2))}
    elif change == "dtype":
        other = {"x": x.astype(np.float64)}
    else:
        other = {"y": x}
    with pytest.raises(SystemExit, match="differ|different"):
        tool.compare(_results(tmp_path / "wheel_r.npz", x=x), _results(tmp_path / "source_r.npz", **other))


def test_compare_run_refuses_the_wrong_fastnet(tmp_path):
    tool = _compare_tool()
    with pytest.raises(SystemExit, match="expected a file under"):
        tool.run(str(tmp_path / "r.npz"), expect_prefix=str(tmp_path / "nowhere"))
