"""The thread count under concurrent Python threads, and the build's OpenMP
probe under sanitizer flags."""
import ast
import os
import threading

import pytest

import fastnet

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_threads_block_is_thread_local_and_restores_what_it_found():
    fastnet.set_num_threads(2)
    inside, barrier, errors = {}, threading.Barrier(2), []

    def worker(n):
        try:
            with fastnet.threads(n):
                barrier.wait(timeout=10)  # both blocks are open at once
                inside[n] = [fastnet.get_num_threads() for _ in range(200)]
                barrier.wait(timeout=10)
            inside[f"after {n}"] = fastnet.get_num_threads()
        except Exception as exc:  # reported below, in the main thread
            errors.append(exc)

    workers = [threading.Thread(target=worker, args=(n,)) for n in (1, 3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(20)
    assert not errors
    assert set(inside[1]) == {1} and set(inside[3]) == {3}
    assert inside["after 1"] == inside["after 3"] == 2 == fastnet.get_num_threads()


def test_threads_block_nests_and_set_num_threads_stays_process_wide():
    fastnet.set_num_threads(2)
    with fastnet.threads(1):
        with fastnet.threads(3):
            assert fastnet.get_num_threads() == 3
        assert fastnet.get_num_threads() == 1
        seen = []
        t = threading.Thread(target=lambda: seen.append(fastnet.get_num_threads()))
        t.start()
        t.join()
        assert seen == [2]  # another thread sees the process default, not this block's count
    assert fastnet.get_num_threads() == 2
    with pytest.raises(ValueError, match=">= 1"):
        with fastnet.threads(0):
            pass
    assert fastnet.get_num_threads() == 2


def _setup_function(name):
    """One top-level function of setup.py, without running setup() (which importing it would)."""
    source = open(os.path.join(ROOT, "setup.py"), encoding="utf-8").read()
    tree = ast.parse(source)
    keep = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
            and not any(alias.name.startswith("setuptools") for alias in node.names)
            and getattr(node, "module", "") != "setuptools.command.build_ext"]
    keep += [node for node in tree.body if isinstance(node, ast.Assign)
             and any(getattr(t, "id", "") == "OPENMP_PROBE" for t in node.targets)]
    keep += [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == name]
    namespace = {}
    exec(compile(ast.Module(body=keep, type_ignores=[]), "setup.py", "exec"), namespace)
    return namespace[name]


def test_openmp_probe_links_with_ldflags(monkeypatch):
    if not os.path.exists(os.path.join(ROOT, "setup.py")):
        pytest.skip("not in a source tree")
    openmp_flags = _setup_function("openmp_flags")
    linked = []

    class Compiler:
        compiler_type = "unix"

        def compile(self, sources, output_dir, extra_postargs):
            return ["probe.o"]

        def link_executable(self, objects, name, output_dir, extra_postargs):
            linked.append(extra_postargs)
            if "-fsanitize=address" not in extra_postargs:  # as a real link of an ASan object fails
                raise RuntimeError("undefined reference to __asan_init")

    monkeypatch.delenv("FASTNET_NO_OPENMP", raising=False)
    monkeypatch.setenv("LDFLAGS", "-fsanitize=address -fsanitize=undefined")
    monkeypatch.setattr("sys.platform", "linux")
    assert openmp_flags(Compiler()) == (["-fopenmp"], ["-fopenmp"])
    assert linked[-1][-2:] == ["-fsanitize=address", "-fsanitize=undefined"]
