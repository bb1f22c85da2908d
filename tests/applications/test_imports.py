"""The package's import rules: `import fastnet` loads only the kernels and the core, the model
families load on first use (and a saved file of any kind loads in a fresh process), and no
private name crosses a package boundary. `lint-imports` (pyproject.toml) checks the layer order."""
import ast
import json
import os
import pathlib
import subprocess
import sys

import pytest

import fastnet

PACKAGE = pathlib.Path(fastnet.__file__).resolve().parent
ROOT = PACKAGE.parent
MAX_CORE_MODULES = 20
LAYERS = ("kernels", "core", "models", "applications")  # the test folders, one per layer
LOADED_ON_FIRST_USE = ("fastnet.seq2seq", "fastnet.image", "fastnet.plot", "fastnet.reference", "fastnet.demo",
                       "fastnet.text", "fastnet.datasets", "fastnet.export", "fastnet.serve")


def run_fresh(code):
    """Run `code` in a new interpreter that imports this checkout's fastnet; returns its stdout."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_import_fastnet_loads_only_the_core():
    loaded = json.loads(run_fresh(
        "import json, sys; import fastnet; print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('fastnet', 'numpy'))))"))
    # numpy.random costs ~40 ms to import: the core makes generators only when asked (an annotation
    # such as `rng: np.random.Generator` is evaluated unless the module has `from __future__ import annotations`)
    assert "numpy.random" not in loaded
    loaded = [m for m in loaded if m.split(".")[0] == "fastnet"]
    assert len(loaded) <= MAX_CORE_MODULES, loaded
    assert not [m for m in loaded if m.startswith(LOADED_ON_FIRST_USE)], loaded
    assert "fastnet.network" in loaded and "fastnet._kernels" in loaded


def test_the_model_families_are_attributes_loaded_on_first_use():
    out = run_fresh(
        "import sys, fastnet\n"
        "assert 'fastnet.seq2seq' not in sys.modules\n"
        "from fastnet import Translator\n"
        "import fastnet.seq2seq, fastnet.image\n"
        "assert Translator is fastnet.seq2seq.Translator and fastnet.Encoder is fastnet.seq2seq.Encoder\n"
        "assert fastnet.ImageDecoder is fastnet.image.ImageDecoder\n"
        "assert fastnet.plot is sys.modules['fastnet.plot'] and fastnet.reference.__name__ == 'fastnet.reference'\n"
        "assert {'Translator', 'ImageDecoder', 'seq2seq', 'plot', 'demo'} <= set(dir(fastnet))\n"
        "print('ok')\n")
    assert out.strip() == "ok"
    with pytest.raises(AttributeError, match="no attribute 'Translater'"):
        fastnet.Translater


def test_every_kind_of_model_file_loads_in_a_fresh_process(tmp_path):
    from fastnet.datasets import toy_pictures

    pictures = toy_pictures(16, seed=0, size=8)
    tr = fastnet.Translator.build(pictures.texts, {"sv": pictures.sv}, d_model=16, n_heads=2, n_layers=1, d_ff=32,
                                  tokenizer="word", seed=0)
    tr.add_decoder("pixels", fastnet.ImageDecoder(16, size=8, hidden=(16,)))
    tr.save(tmp_path / "translator.safetensors")
    tr.decoders["pixels"].save(tmp_path / "decoder.safetensors")
    fastnet.Network([fastnet.Dense(2, 3)]).save(tmp_path / "network.safetensors")
    out = run_fresh(
        "import sys, fastnet\n"
        f"folder = {str(tmp_path)!r}\n"
        "for name in ('translator', 'decoder', 'network'):\n"
        "    model = fastnet.load(folder + '/' + name + '.safetensors')\n"
        "    print(type(model).__name__, sorted(getattr(model, 'decoders', {})))\n")
    assert out.split("\n")[:3] == ["Translator ['pixels', 'sv']", "ImageDecoder []", "Network []"]


# ---- no private names across packages ---------------------------------------------------------
def _package_of(dotted):
    """The package a dotted module name belongs to (itself when it is a package)."""
    path = ROOT.joinpath(*dotted.split("."))
    return dotted if (path / "__init__.py").is_file() else dotted.rpartition(".")[0]


def _private_scope(dotted):
    """The package inside which `dotted` (a module or module.name) may be imported, or None when
    nothing in it is private. A private module or name belongs to the package that holds it."""
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not (part.startswith("__") and part.endswith("__")):
            return _package_of(".".join(parts[:i]))
    return None


def _fastnet_imports(path):
    """(line, dotted name) of every `import fastnet...` / `from fastnet... import name` in a file."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "fastnet")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "fastnet":
            yield from ((node.lineno, f"{node.module}.{a.name}") for a in node.names)


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        yield path, dotted, _package_of(dotted)


def test_no_private_name_is_imported_from_another_package():
    crossings = [f"{path.relative_to(ROOT)}:{line} imports {name}"
                 for path, _, package in _modules() for line, name in _fastnet_imports(path)
                 if _private_scope(name) not in (None, package)]
    assert not crossings, "\n".join(crossings)


def test_only_ops_and_the_thread_settings_call_the_compiled_kernels():
    # The import linter does not see the compiled fastnet._kernels; this keeps it behind fastnet.ops.
    callers = {dotted for path, dotted, _ in _modules() for _, name in _fastnet_imports(path)
               if name.startswith("fastnet._kernels")}
    assert callers <= {"fastnet.ops", "fastnet._config"}, callers


def test_every_test_file_sits_in_the_folder_of_its_layer():
    tests = pathlib.Path(__file__).resolve().parents[1]
    assert sorted(p.name for p in tests.iterdir() if p.is_dir() and p.name in LAYERS) == sorted(LAYERS)
    stray = sorted(p.name for p in tests.glob("test_*.py"))
    assert not stray, f"move {stray} into tests/{'|'.join(LAYERS)}/ (CONTRIBUTING.md, 'How the tests are laid out')"
