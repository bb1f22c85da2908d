#!/usr/bin/env bash
# The kernel and layer tests under AddressSanitizer + UndefinedBehaviorSanitizer.
#
# Builds a copy of the source tree with -fsanitize=address,undefined and
# OpenMP on (checked: the OpenMP probe links with LDFLAGS), then runs the
# kernel tests -- which run every case on each CPU path the machine has
# (generic, avx2, avx512: the cpu_path fixture) -- and the layer tests once
# per CPU path (FASTNET_CPU), on 2 OpenMP threads. Any sanitizer report
# aborts the process, so the script fails on the first one; UBSan includes
# -fsanitize=alignment, which catches a misaligned array reaching C.
#
# Leak detection is off: CPython itself does not free everything at exit, and
# without an instrumented interpreter every such block would be reported.
#
# Usage: scripts/sanitize.sh [BUILD_DIR]   (default: a fresh temporary directory)
# Environment: PYTHON (default python3), CC (default gcc),
#              FASTNET_SANITIZE_PYTEST (extra pytest arguments).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
export CC="${CC:-gcc}"
BUILD="${1:-$(mktemp -d -t fastnet-sanitize.XXXXXX)}"
START=$SECONDS
step() { printf '\n==> [%3ds] %s\n' "$((SECONDS - START))" "$*"; }
fail() { printf 'sanitize.sh: %s\n' "$*" >&2; exit 1; }

# Kernel tests: every kernel, its error paths and awkward inputs (NaN, read-only,
# misaligned, big-endian, overlapping), each on every CPU path. test_gemm.py's
# large property sweep is left to the normal suite: its smoke tests cover every
# GEMM code path at a fraction of the cost under ASan; its transposing-copy
# tests run here, and so do the packed-weights products' (the driver reads a B
# packed once, panel offsets of its own), the decoder step's
# (csrc/decoder_step.c strings the kernels together with its own pointer
# arithmetic over caches and scratch) and beam search's candidate pick
# (csrc/beam.c).
KERNEL_TESTS=(tests/kernels/test_hardening_kernels.py tests/kernels/test_transformer_kernels.py tests/kernels/test_activations.py
              tests/kernels/test_losses.py tests/kernels/test_optim.py tests/kernels/test_dense.py tests/kernels/test_gemm_smoke.py
              tests/kernels/test_elementwise_smoke.py tests/kernels/test_kernel_errors.py tests/kernels/test_bf16.py tests/kernels/test_int8.py
              tests/kernels/test_threads.py
              tests/kernels/test_gemm.py::test_transpose_is_exact_on_every_path
              tests/kernels/test_gemm.py::test_transpose_rejects_what_it_cannot_transpose
              tests/kernels/test_packed_weights.py
              tests/models/test_decoder_step.py
              tests/applications/test_translation_recipe.py::test_beam_candidates_are_ranked_as_a_stable_sort_ranks_them)
# Layer tests: forward/backward of every layer, run once per CPU path.
LAYER_TESTS=(tests/core/test_layers.py tests/models/test_seq2seq_layers.py)

step "copying the source tree to $BUILD"
mkdir -p "$BUILD"
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard -- csrc fastnet tests setup.py pyproject.toml \
    | grep -zv '\.so$' | xargs -0 tar -cf -) | tar -xf - -C "$BUILD"
rm -f "$BUILD"/fastnet/_kernels*.so "$BUILD"/fastnet/_kernels.c

FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g"
step "building with $FLAGS (OpenMP on)"
(cd "$BUILD" && CFLAGS="$FLAGS" LDFLAGS="-fsanitize=address,undefined" \
    "$PYTHON" setup.py build_ext --inplace -j 2 >build.log 2>&1) || { tail -30 "$BUILD/build.log"; fail "build failed"; }

LIBASAN="$("$CC" -print-file-name=libasan.so)"
[ -e "$LIBASAN" ] || fail "no libasan.so for $CC"
export LD_PRELOAD="$LIBASAN"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:allocator_may_return_null=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export OMP_NUM_THREADS=2 PYTHONDONTWRITEBYTECODE=1 HYPOTHESIS_PROFILE=ci

cd "$BUILD"
"$PYTHON" - <<'EOF' || fail "the sanitizer build is not usable"
import os
import fastnet
here = os.path.realpath(os.getcwd())
assert os.path.realpath(fastnet.__file__).startswith(here + os.sep), \
    f"imported {fastnet.__file__}, not the sanitizer build in {here} (an editable install first on the path?)"
c = fastnet.config()
assert c["openmp"], "the sanitizer build came out without OpenMP (is LDFLAGS reaching the probe?)"
print(f"fastnet {c['version']}: openmp on, best CPU path {c['best_cpu_path']}")
EOF
PATHS=$("$PYTHON" -c "
import fastnet._kernels as k
order = ['generic', 'avx2', 'avx512']
print(' '.join(order[:order.index(k.best_cpu_path()) + 1]))")

# shellcheck disable=SC2086
step "kernel tests, every case on each CPU path ($PATHS)"
"$PYTHON" -m pytest -q -p no:cacheprovider "${KERNEL_TESTS[@]}" ${FASTNET_SANITIZE_PYTEST:-}
for path in $PATHS; do
    step "layer tests on the $path path"
    # shellcheck disable=SC2086
    FASTNET_CPU=$path "$PYTHON" -m pytest -q -p no:cacheprovider "${LAYER_TESTS[@]}" ${FASTNET_SANITIZE_PYTEST:-}
done
step "no sanitizer report"
