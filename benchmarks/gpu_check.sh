#!/usr/bin/env bash
# One pass over everything Ember's CUDA side needs a GPU for: build, GPU tests, compute-sanitizer,
# the SASS check and the benchmarks, printing one table last. Run from the repository root on a
# machine with a CUDA GPU, nvcc, CuPy, PyTorch, CMake and ninja (no network needed):
#
#     OUT=/some/folder bash benchmarks/gpu_check.sh
#
# Files written to $OUT (default ./gpu_check_out): build.log, tests.log, sanitize.log, sass.txt,
# bench.log, bench.json, summary.txt. Each stage has a time limit and the whole script stays
# within EMBER_CHECK_BUDGET seconds (default 470); a failing stage is reported and the next one
# runs anyway. Hooks: every tests/cuda/test_*.py is run (add GPU tests there) and every
# benchmarks/bench_cuda*.py script after bench_cuda.py (each gets --json $OUT/<name>.json).
set -u
OUT="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$OUT"
START=$(date +%s)
BUDGET="${EMBER_CHECK_BUDGET:-470}"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
export EMBER_TEST_SEED="${EMBER_TEST_SEED:-$(( (RANDOM << 15) | RANDOM ))}"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"

note() { echo "$*" | tee -a "$SUMMARY"; }
elapsed() { echo $(( $(date +%s) - START )); }
# limit WANTED RESERVE: seconds for a stage, leaving RESERVE seconds for the stages after it.
limit() {
  local left=$(( BUDGET - $(elapsed) - $2 ))
  (( left > $1 )) && left=$1
  (( left < 10 )) && left=10
  echo "$left"
}
stage() { note ""; note "=== $1 (t=$(elapsed)s)"; }

stage "machine"
{
  nvidia-smi -L
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader
  nvcc --version | tail -2
  "$PY" -c "import sys, numpy; print('python', sys.version.split()[0], 'numpy', numpy.__version__)"
  "$PY" -c "import cupy; print('cupy', cupy.__version__, 'cuda runtime', cupy.cuda.runtime.runtimeGetVersion())" 2>&1
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))" 2>&1
  command -v compute-sanitizer cuobjdump ncu
} 2>&1 | tee -a "$SUMMARY"

stage "build (pip install --no-build-isolation, 16 jobs)"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-16}"
T=$(limit 300 160)
EMBER_CUDA=ON timeout "$T" "$PY" -m pip install --no-build-isolation --no-deps -v . > "$OUT/build.log" 2>&1
BUILD_RC=$?
if [ "$BUILD_RC" -eq 0 ]; then
  BUILD=ok
  note "build ok at t=$(elapsed)s"
  grep -E "ember: building ember._cuda" "$OUT/build.log" | head -1 | tee -a "$SUMMARY"
else
  BUILD=FAILED
  note "build FAILED (exit $BUILD_RC, limit ${T}s; 124 = timed out); the end of build.log:"
  grep -E "error|Error" "$OUT/build.log" | head -20 | tee -a "$SUMMARY"
  tail -30 "$OUT/build.log" | tee -a "$SUMMARY"
fi
"$PY" -c "import ember, ember._cuda as c; print('ember', ember.__version__, '_cuda devices', c.device_count(), c.device_info(0))" 2>&1 | tee -a "$SUMMARY"

stage "GPU tests (pytest -m cuda tests: the kernels, and every device-fixture test on 'cuda'), EMBER_TEST_SEED=$EMBER_TEST_SEED"
T=$(limit 200 120)
# Several workers (pytest-xdist): a kernel that faults or hangs takes one worker down, not the run
# (tests/cuda/conftest.py leaves a worker whose CUDA context is lost; pytest-timeout ends a hung one).
XDIST=""
"$PY" -c "import xdist" 2>/dev/null && XDIST="-n 4"
"$PY" -c "import pytest_timeout" 2>/dev/null && XDIST="$XDIST --timeout 90 --timeout-method thread"
timeout "$T" "$PY" -m pytest -m cuda tests -q -rfE -p no:cacheprovider $XDIST > "$OUT/tests.log" 2>&1
TESTS_RC=$?
[ "$TESTS_RC" -eq 124 ] && note "pytest TIMED OUT after ${T}s: the summary below is incomplete"
note "pytest exit $TESTS_RC (limit ${T}s); failures and summary:"
grep -E "^(FAILED|ERROR)|passed|failed|error|skipped" "$OUT/tests.log" | tail -40 | tee -a "$SUMMARY"

stage "compute-sanitizer (memcheck on every kernel; racecheck on the shared-memory kernels)"
if command -v compute-sanitizer > /dev/null; then
  T=$(limit 45 100)
  timeout "$T" compute-sanitizer --tool memcheck --error-exitcode 3 "$PY" benchmarks/cuda_sanitize.py \
    > "$OUT/sanitize.log" 2>&1
  note "memcheck exit $? (limit ${T}s): $(grep -E 'ERROR SUMMARY' "$OUT/sanitize.log" | tail -1)"
  T=$(limit 45 80)
  timeout "$T" compute-sanitizer --tool racecheck --racecheck-report hazard --error-exitcode 3 "$PY" \
    benchmarks/cuda_sanitize.py --smem-only >> "$OUT/sanitize.log" 2>&1
  note "racecheck exit $? (limit ${T}s): $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' "$OUT/sanitize.log" | tail -1)"
  grep -E "^=+ (Invalid|Error|Race|Warning)|^ok |cuda_sanitize" "$OUT/sanitize.log" | head -30 | tee -a "$SUMMARY"
else
  note "compute-sanitizer not found: skipped"
fi

stage "SASS: tensor-core instructions in ember._cuda"
SO=$("$PY" -c "import ember._cuda as c; print(c.__file__)" 2>/dev/null)
if [ -n "$SO" ] && command -v cuobjdump > /dev/null; then
  timeout 30 cuobjdump --dump-sass "$SO" > "$OUT/sass_full.tmp" 2>&1
  {
    echo "functions: $(grep -c 'Function :' "$OUT/sass_full.tmp")"
    for f in gemm_wgmma_kernel gemm_mma_kernel simt_gemm_kernel; do
      echo "$f: HGMMA $(awk -v f="$f" '/Function :/{on=index($0,f)>0} on&&/HGMMA/' "$OUT/sass_full.tmp" | wc -l)," \
           "HMMA $(awk -v f="$f" '/Function :/{on=index($0,f)>0} on&&/HMMA/' "$OUT/sass_full.tmp" | wc -l)," \
           "FFMA $(awk -v f="$f" '/Function :/{on=index($0,f)>0} on&&/FFMA/' "$OUT/sass_full.tmp" | wc -l)," \
           "LDL/STL $(awk -v f="$f" '/Function :/{on=index($0,f)>0} on&&/(LDL|STL)/' "$OUT/sass_full.tmp" | wc -l)"
    done
    grep -m3 "arch = " "$OUT/sass_full.tmp"
  } > "$OUT/sass.txt"
  rm -f "$OUT/sass_full.tmp"
  tee -a "$SUMMARY" < "$OUT/sass.txt"
else
  note "cuobjdump or the module not found: skipped"
fi

stage "benchmarks"
T=$(limit 150 60)
timeout "$T" "$PY" benchmarks/bench_cuda.py --json "$OUT/bench.json" > "$OUT/bench.log" 2>&1
BENCH_RC=$?
note "bench_cuda exit $BENCH_RC (limit ${T}s)"
for extra in benchmarks/bench_cuda_*.py; do
  [ -e "$extra" ] || continue
  name=$(basename "$extra" .py)
  T=$(limit 90 5)
  timeout "$T" "$PY" "$extra" --json "$OUT/$name.json" >> "$OUT/bench.log" 2>&1
  note "$name exit $? (limit ${T}s)"
done

stage "summary"
note "build: $BUILD; tests: exit $TESTS_RC; bench: exit $BENCH_RC; total $(elapsed)s"
grep -E "passed|failed" "$OUT/tests.log" | tail -1 | tee -a "$SUMMARY"
echo
# The table last, so the end of the output carries it.
awk '/^====================/{p=1} p' "$OUT/bench.log" | tee -a "$SUMMARY"
[ "$BUILD" = ok ] && [ "$TESTS_RC" -eq 0 ] && [ "$BENCH_RC" -eq 0 ]
