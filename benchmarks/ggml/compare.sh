#!/usr/bin/env bash
# Ember's int4 and int8 formats against ggml's (the library under llama.cpp) on one machine: the relative
# error of each format on a Gaussian 14336 x 4096 weight, and the time of y = W x (batch 1) with
# the weights in the last-level cache, 2 threads, ggml's extra buffer types (AMX, repacked)
# included. Not part of the test suite: it needs a ggml source tree.
#
#   bash benchmarks/ggml/compare.sh /path/to/ggml        # a clone of github.com/ggml-org/ggml
set -euo pipefail
src=$(realpath "${1:?usage: compare.sh GGML_SOURCE_DIR}")
here=$(cd "$(dirname "$0")" && pwd)
work=${WORK:-$(mktemp -d)}
mkdir -p "$work"
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_OPENMP=ON \
      -DBUILD_SHARED_LIBS=ON -DGGML_BUILD_TESTS=OFF -DGGML_BUILD_EXAMPLES=OFF > "$work/cmake.log"
cmake --build "$work/build" -j2 > "$work/build.log"
lib="$work/build/src"
for tool in qerr mvbench; do
  gcc -O2 -march=native -fopenmp -I"$src/include" "$here/$tool.c" -o "$work/$tool" -L"$lib" -lggml -lggml-cpu \
      -lggml-base -Wl,-rpath,"$lib" -lm
done
python - "$work" <<'PY'
import sys, numpy as np
rng = np.random.default_rng(1234)
rng.standard_normal((14336, 4096), dtype=np.float32).tofile(f"{sys.argv[1]}/W.f32")
rng.standard_normal(4096, dtype=np.float32).tofile(f"{sys.argv[1]}/x.f32")
PY
echo "== ggml: error (Gaussian W, x quantized as each type's vec_dot_type)"
OMP_NUM_THREADS=2 "$work/qerr" "$work/W.f32" 14336 4096 "$work/x.f32"
echo "== ggml: 1 x 4096 x 14336, 2 threads, weights in cache"
OMP_NUM_THREADS=2 "$work/mvbench" -t 2 -r 30 -f 0 q4_0 q4_K iq4_nl q8_0 2>/dev/null
echo "== Ember: the same W and x"
python "$here/ember_side.py" "$work/W.f32" "$work/x.f32"
