/* Multiply two matrices with Ember's GEMM from C, and check the result against plain loops.
 *
 *     gemm M N K [OUT]      C (M x N) = A (M x K) @ B (K x N); OUT receives C as raw float32
 *
 * A and B are filled from a small linear congruential generator (seed 1 for A, 2 for B), so
 * another program can make the same inputs. Exit status 0 when Ember agrees with the loops. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "ember/ember.h"

static void fill(float* x, long count, unsigned seed) {
  unsigned state = seed;
  for (long i = 0; i < count; ++i) {
    state = state * 1664525u + 1013904223u;
    x[i] = (float)(state >> 8) / 16777216.0f - 0.5f;
  }
}

int main(int argc, char** argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s M N K [OUT]\n", argv[0]);
    return 2;
  }
  const long m = atol(argv[1]), n = atol(argv[2]), k = atol(argv[3]);
  float* a = malloc(sizeof(float) * (size_t)(m * k));
  float* b = malloc(sizeof(float) * (size_t)(k * n));
  float* c = malloc(sizeof(float) * (size_t)(m * n));
  if (!a || !b || !c) {
    fprintf(stderr, "out of memory\n");
    return 1;
  }
  fill(a, m * k, 1);
  fill(b, k * n, 2);
  if (ember_gemm_f32(0, 0, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n, NULL, 0) != EMBER_OK) {
    fprintf(stderr, "ember_gemm_f32: %s\n", ember_last_error());
    return 1;
  }
  double worst = 0.0;
  for (long i = 0; i < m; ++i)
    for (long j = 0; j < n; ++j) {
      double sum = 0.0;
      for (long p = 0; p < k; ++p) sum += (double)a[i * k + p] * b[p * n + j];
      const double diff = fabs(sum - c[i * n + j]);
      if (diff > worst) worst = diff;
    }
  printf("ember %s (ABI %d), ISA %s, %d threads: %ldx%ldx%ld, max |ember - loops| = %.3g\n", ember_version(),
         ember_abi_version(), ember_isa(), ember_get_num_threads(), m, n, k, worst);
  if (argc > 4) {
    FILE* out = fopen(argv[4], "wb");
    if (!out || fwrite(c, sizeof(float), (size_t)(m * n), out) != (size_t)(m * n) || fclose(out) != 0) {
      fprintf(stderr, "cannot write %s\n", argv[4]);
      return 1;
    }
  }
  free(a);
  free(b);
  free(c);
  return worst <= 1e-4 * (double)k ? 0 : 1;
}
