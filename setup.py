"""Build the compiled core: every csrc/*.c file plus the Cython wrapper.

OpenMP is found by a compile-and-link probe (as scikit-learn does). Without it
the build still succeeds, single-threaded, with a warning.
FASTNET_NO_OPENMP=1 skips the probe so the serial build is tested too.
AVX2/FMA and AVX-512 code carries per-function target attributes and is chosen
at import by CPUID, so the build never targets the build machine's own CPU.
"""
import glob
import os
import shlex
import sys
import tempfile
import textwrap
import warnings

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

OPENMP_PROBE = textwrap.dedent(
    """
    #include <omp.h>
    int main(void) {
        int hits = 0;
        #pragma omp parallel num_threads(2)
        {
            #pragma omp atomic
            hits += 1;
        }
        return hits > 0 ? 0 : 1;
    }
    """
)


def openmp_flags(compiler):
    """Return (compile_flags, link_flags) that make OpenMP work, or None."""
    if os.environ.get("FASTNET_NO_OPENMP", "") == "1":
        return None
    if compiler.compiler_type == "msvc":
        candidates = [(["/openmp"], [])]
    elif sys.platform == "darwin":
        candidates = [(["-Xpreprocessor", "-fopenmp"], ["-lomp"]), (["-fopenmp"], ["-fopenmp"])]
    else:
        candidates = [(["-fopenmp"], ["-fopenmp"])]
    # The probe is linked as an executable, which distutils does without LDFLAGS; pass them, or a
    # build with e.g. CFLAGS=LDFLAGS=-fsanitize=address fails the probe and comes out single-threaded.
    env_ldflags = shlex.split(os.environ.get("LDFLAGS", ""))
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "probe_openmp.c")
        with open(source, "w") as f:
            f.write(OPENMP_PROBE)
        for cflags, lflags in candidates:
            try:
                objects = compiler.compile([source], output_dir=tmp, extra_postargs=cflags)
                compiler.link_executable(objects, "probe_openmp", output_dir=tmp,
                                         extra_postargs=lflags + env_ldflags)
            except Exception:
                continue
            return cflags, lflags
    return None


class BuildExt(build_ext):
    def build_extensions(self):
        flags = openmp_flags(self.compiler)
        if flags is None:
            warnings.warn("fastnet: OpenMP not found (or FASTNET_NO_OPENMP=1); building single-threaded.")
        for ext in self.extensions:
            if self.compiler.compiler_type == "msvc":
                ext.extra_compile_args += ["/O2"]
            else:
                ext.extra_compile_args += ["-O3", "-std=c11", "-fno-math-errno", "-Wall", "-Wno-unused-function"]
            if flags is not None:
                ext.extra_compile_args += flags[0]
                ext.extra_link_args += flags[1]
                ext.define_macros.append(("FN_HAVE_OPENMP", "1"))
        super().build_extensions()


def extensions():
    from Cython.Build import cythonize

    sources = ["fastnet/_kernels.pyx"] + sorted(glob.glob("csrc/*.c"))
    ext = Extension("fastnet._kernels", sources=sources, include_dirs=["csrc"],
                    depends=glob.glob("csrc/*.h") + glob.glob("fastnet/*.pxi") + glob.glob("fastnet/*.pxd"))
    directives = {"language_level": 3, "boundscheck": False, "wraparound": False, "cdivision": True,
                  "initializedcheck": False}
    return cythonize([ext], compiler_directives=directives)


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
