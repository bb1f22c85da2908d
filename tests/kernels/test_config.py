import pytest

import fastnet
from helpers import config_in_subprocess as _config_in_subprocess


def test_show_config_names_version_path_openmp_threads(capsys):
    fastnet.show_config()
    out = capsys.readouterr().out
    assert fastnet.__version__ in out
    assert fastnet._kernels.get_cpu_path() in out
    assert f"int8     : {fastnet._kernels.get_int8_path()} kernels" in out
    assert "openmp" in out and "threads" in out


def test_threads_context_manager_restores():
    before = fastnet.get_num_threads()
    with fastnet.threads(1):
        assert fastnet.get_num_threads() == 1
    assert fastnet.get_num_threads() == before


@pytest.mark.parametrize("bad", [0, -3])
def test_set_num_threads_rejects_non_positive(bad):
    with pytest.raises(ValueError, match="threads"):
        fastnet.set_num_threads(bad)


def test_set_num_threads_rejects_non_int():
    with pytest.raises(TypeError):
        fastnet.set_num_threads(2.5)


def test_unknown_cpu_path_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown CPU path"):
        fastnet._kernels.set_cpu_path("sse9")


def test_fastnet_cpu_generic_forces_portable_path():
    assert _config_in_subprocess(FASTNET_CPU="generic")["cpu_path"] == "generic"


def test_omp_num_threads_sets_default():
    assert _config_in_subprocess(OMP_NUM_THREADS="1")["threads"] == 1
