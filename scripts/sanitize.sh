#!/usr/bin/env bash
# Build Ember with AddressSanitizer and UndefinedBehaviorSanitizer into its own virtual
# environment and build directory (the normal install is left alone), then run the kernel tests
# once and the fuzzer's short profile (tests/fuzz) on each of the generic, AVX2 and best ISAs.
# Any sanitizer report fails the run: ASan aborts, and UBSan halts on its first error.
#
#   scripts/sanitize.sh                 # from the repository root, or from anywhere
#   EMBER_SANITIZE_ISAS="avx2" scripts/sanitize.sh      # only some ISAs
#   EMBER_SANITIZE_VENV=/tmp/asan scripts/sanitize.sh   # another virtual environment
#
# Needs gcc's libasan and libubsan (Debian: they come with g++) and what pip installs below.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${EMBER_SANITIZE_VENV:-.venv-asan}
BUILD_DIR=${EMBER_SANITIZE_BUILD_DIR:-build-asan}
PYTHON=${PYTHON:-python3}
t0=$(date +%s)
say() { printf '[sanitize %4ds] %s\n' "$(( $(date +%s) - t0 ))" "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
say "installing the build and test dependencies"
pip install --quiet "scikit-build-core>=0.10" "pybind11>=2.12" numpy safetensors tqdm ml_dtypes pytest pytest-benchmark \
  hypothesis threadpoolctl

# gcc's -fsanitize=undefined leaves out float-cast-overflow (a NaN or an out-of-range float
# converted to an integer), which the quantizers must never do: ask for it too.
SANITIZERS=address,undefined,float-cast-overflow
say "building Ember with -fsanitize=$SANITIZERS into $BUILD_DIR"
pip install --quiet --no-build-isolation --no-deps --force-reinstall . -Cbuild-dir="$BUILD_DIR" \
  -Ccmake.build-type=RelWithDebInfo -Cinstall.strip=false -Ccmake.define.EMBER_CUDA=OFF \
  "-Ccmake.define.CMAKE_CXX_FLAGS=-fsanitize=$SANITIZERS -fno-omit-frame-pointer" \
  "-Ccmake.define.CMAKE_MODULE_LINKER_FLAGS=-fsanitize=$SANITIZERS" \
  "-Ccmake.define.CMAKE_SHARED_LINKER_FLAGS=-fsanitize=$SANITIZERS"
say "built"

# libstdc++ is preloaded with libasan, or the first C++ throw aborts. Leak detection stays off
# (CPython's own allocations would flood it); a huge allocation fails as MemoryError instead of
# aborting, and none may exceed 4 GiB (the fuzzer asks for absurd sizes on purpose).
LD_PRELOAD="$(g++ -print-file-name=libasan.so) $(g++ -print-file-name=libstdc++.so)"
export LD_PRELOAD
export ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:max_allocation_size_mb=4096
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
run_pytest() { python -m pytest -p no:cacheprovider "$@"; }  # the header names EMBER_TEST_SEED
# The comparisons with PyTorch and scikit-learn run in the normal job; this environment does not
# install them. Under CI, CI=0 keeps hypothesis's derandomised "ci" profile (it looks for the
# variable) but not the suite's rule that a test skipped for a missing reference library fails.
if [ -n "${CI:-}" ]; then export CI=0; fi

best=$(python -c "import ember; print(ember._C.best_isa())")
isas=${EMBER_SANITIZE_ISAS:-$(printf '%s\n' generic avx2 "$best" | awk '!seen[$0]++' | tr '\n' ' ')}
available=$(python -c "import ember; print(' '.join(ember.available_isas()))")

status=0
# The kernel tests take every ISA the CPU has through their `isa` fixture: one run covers them.
say "tests/kernels (every ISA: $available)"
run_pytest tests/kernels || status=1
for isa in $isas; do
  case " $available " in *" $isa "*) ;; *) say "skipping $isa: this CPU does not support it"; continue ;; esac
  say "tests/fuzz, short profile, EMBER_ISA=$isa"
  EMBER_ISA=$isa run_pytest tests/fuzz || status=1
done
say "done: $([ $status = 0 ] && echo clean || echo 'FAILED (see the reports above)')"
exit $status
