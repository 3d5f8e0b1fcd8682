/* Classify images with a model trained in Python, from C: no Python at run time.
 *
 *     classify MODEL.safetensors IMAGES N C H W [LOGITS]
 *
 * MODEL is an Ember checkpoint (`ember train` writes one: the CNN on the bundled digits; a
 * quantized one from `ember quantize` works too). IMAGES holds N images of C x H x W float32
 * values, already normalised as the model was trained (raw, native byte order). Each image is
 * classified on its own (batch 1, as a server would), its predicted class printed, and the
 * mean latency reported; LOGITS, if given, receives the N x classes outputs as raw float32. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "ember/ember.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int fail(const char* what) {
  fprintf(stderr, "%s: %s\n", what, ember_last_error());
  return 1;
}

int main(int argc, char** argv) {
  if (argc < 7) {
    fprintf(stderr, "usage: %s MODEL.safetensors IMAGES N C H W [LOGITS]\n", argv[0]);
    return 2;
  }
  const long n = atol(argv[3]);
  int64_t image[4] = {1, atol(argv[4]), atol(argv[5]), atol(argv[6])};
  if (n < 1 || image[1] < 1 || image[2] < 1 || image[3] < 1) {
    fprintf(stderr, "N, C, H and W must be >= 1\n");
    return 2;
  }

  ember_model* model = NULL;
  if (ember_model_load(argv[1], &model) != EMBER_OK) return fail("ember_model_load");
  printf("model %s:", argv[1]);
  for (int64_t i = 0; i < ember_model_num_layers(model); ++i) printf(" [%s]", ember_model_layer(model, i));
  printf("\n");

  int rank = 0;
  int64_t out[EMBER_MAX_DIMS];
  if (ember_model_output_shape(model, 4, image, &rank, out) != EMBER_OK) return fail("ember_model_output_shape");
  if (rank != 2) {
    fprintf(stderr, "the model gives %d-d outputs, not (1, classes)\n", rank);
    return 1;
  }
  const long classes = (long)out[1], pixels = (long)(image[1] * image[2] * image[3]);

  float* x = malloc(sizeof(float) * (size_t)(n * pixels));
  float* logits = malloc(sizeof(float) * (size_t)(n * classes));
  FILE* f = fopen(argv[2], "rb");
  if (!x || !logits || !f || fread(x, sizeof(float), (size_t)(n * pixels), f) != (size_t)(n * pixels)) {
    fprintf(stderr, "cannot read %ld images of %ld values from %s\n", n, pixels, argv[2]);
    return 1;
  }
  fclose(f);

  double best = 1e30, total = 0.0;
  for (long i = 0; i < n; ++i) {
    const double start = now();
    if (ember_model_forward(model, 4, image, x + i * pixels, logits + i * classes, classes) != EMBER_OK)
      return fail("ember_model_forward");
    const double seconds = now() - start;
    total += seconds;
    best = seconds < best ? seconds : best;
    long top = 0;
    for (long c = 1; c < classes; ++c)
      if (logits[i * classes + c] > logits[i * classes + top]) top = c;
    printf("image %ld: class %ld\n", i, top);
  }
  printf("%ld images, batch 1: mean %.1f us, best %.1f us per image (%d threads, ISA %s)\n", n, 1e6 * total / n,
         1e6 * best, ember_get_num_threads(), ember_isa());

  if (argc > 7) {
    FILE* o = fopen(argv[7], "wb");
    if (!o || fwrite(logits, sizeof(float), (size_t)(n * classes), o) != (size_t)(n * classes) || fclose(o) != 0) {
      fprintf(stderr, "cannot write %s\n", argv[7]);
      return 1;
    }
  }
  ember_model_free(model);
  free(x);
  free(logits);
  return 0;
}
