// mvbench: time y = W x (ggml_mul_mat) on the ggml CPU backend, W = 14336 x 4096 quantized,
// with W placed in (a) the normal CPU buffer, (b) each CPU "extra" buffer type (AMX, CPU_REPACK, ...).
// usage: mvbench [-t threads] [-r reps] [-w warmup] [-f flushMiB] [type ...]   (default types: q4_0 q4_K iq4_xs q8_0)
//   -f N : before every timed run, read an N MiB buffer to evict W from cache (not timed); 0 = hot cache
#include "ggml.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NROWS 14336   // output features (ne1 of W)
#define NCOLS 4096    // input features  (ne0 of W)

static double now_us(void) {
    struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec * 1e-3;
}
static int cmp_d(const void * a, const void * b) {
    double x = *(const double *) a, y = *(const double *) b; return (x > y) - (x < y);
}
static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double urand(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return ((rng >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
static float grand(void) { return (float) (sqrt(-2.0 * log(urand())) * cos(6.283185307179586 * urand())); }

static enum ggml_type type_from_name(const char * s) {
    for (int t = 0; t < GGML_TYPE_COUNT; t++) {
        const char * n = ggml_type_name((enum ggml_type) t);
        if (n && strcmp(n, s) == 0) return (enum ggml_type) t;
    }
    fprintf(stderr, "unknown type %s\n", s); exit(1);
}

// read-only flush: evicts W without leaving dirty lines whose write-back would then be charged to the timed run
static const volatile char * flush_buf = NULL; static size_t flush_sz = 0; static volatile long flush_sink;
static void flush_cache(void) {
    long s = 0;
    for (size_t i = 0; i < flush_sz; i += 64) s += flush_buf[i];
    flush_sink = s;
}

// returns median us, or -1 if buft does not accept this type/op; y_out receives the result
static double bench(ggml_backend_t be, ggml_backend_dev_t dev, ggml_backend_buffer_type_t buft, enum ggml_type type,
                    const void * Wq, const float * x, float * y_out, int reps, int warm, size_t * wbytes, const char ** note, double * tmin) {
    *note = "";
    struct ggml_init_params pw = { ggml_tensor_overhead() * 2, NULL, true };
    struct ggml_context * ctx_w = ggml_init(pw);
    struct ggml_tensor * W = ggml_new_tensor_2d(ctx_w, type, NCOLS, NROWS);
    ggml_set_name(W, "W");
    ggml_backend_buffer_t bw = ggml_backend_alloc_ctx_tensors_from_buft(ctx_w, buft);
    if (!bw) { *note = "alloc failed"; ggml_free(ctx_w); return -1; }

    struct ggml_init_params pc = { ggml_tensor_overhead() * 8 + ggml_graph_overhead(), NULL, true };
    struct ggml_context * ctx = ggml_init(pc);
    struct ggml_tensor * X = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, NCOLS, 1);
    struct ggml_tensor * Y = ggml_mul_mat(ctx, W, X);   // [NROWS, 1]
    struct ggml_cgraph * gf = ggml_new_graph(ctx);
    ggml_build_forward_expand(gf, Y);
    ggml_backend_buffer_t bc = ggml_backend_alloc_ctx_tensors(ctx, be);

    double med = -1;
    *wbytes = ggml_backend_buft_get_alloc_size(buft, W);
    // the extra buffer types decide per op (and per weight type) whether they can run it
    if (!ggml_backend_dev_supports_op(dev, Y)) {
        *note = "buffer type does not support this type (supports_op=false)";
        goto done;
    }
    ggml_backend_tensor_set(W, Wq, 0, ggml_nbytes(W));   // extra bufts repack here
    ggml_backend_tensor_set(X, x, 0, ggml_nbytes(X));

    for (int i = 0; i < warm; i++) ggml_backend_graph_compute(be, gf);
    double * t = malloc(reps * sizeof(double));
    for (int i = 0; i < reps; i++) {
        if (flush_sz) flush_cache();
        double t0 = now_us();
        if (ggml_backend_graph_compute(be, gf) != GGML_STATUS_SUCCESS) { *note = "compute failed"; free(t); goto done; }
        t[i] = now_us() - t0;
    }
    qsort(t, reps, sizeof(double), cmp_d);
    med = t[reps / 2];
    *tmin = t[0];
    free(t);
    ggml_backend_tensor_get(Y, y_out, 0, ggml_nbytes(Y));
done:
    ggml_backend_buffer_free(bc);
    ggml_backend_buffer_free(bw);
    ggml_free(ctx);
    ggml_free(ctx_w);
    return med;
}

int main(int argc, char ** argv) {
    int nth = 2, reps = 50, warm = 5; size_t flush_mib = 0;
    const char * deftypes[] = { "q4_0", "q4_K", "iq4_xs", "q8_0" };
    const char ** types = deftypes; int ntypes = 4;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "-t")) nth = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-r")) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-w")) warm = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-f")) flush_mib = atoll(argv[++i]);
        else { fprintf(stderr, "bad arg %s\n", argv[i]); return 1; }
    }
    if (i < argc) { types = (const char **) (argv + i); ntypes = argc - i; }
    if (flush_mib) { flush_sz = flush_mib << 20; char * fb = malloc(flush_sz); memset(fb, 1, flush_sz); flush_buf = fb; }

    ggml_cpu_init();
    ggml_backend_t be = ggml_backend_cpu_init();
    ggml_backend_cpu_set_n_threads(be, nth);
    ggml_backend_reg_t reg = ggml_backend_cpu_reg();
    ggml_backend_dev_t dev = ggml_backend_reg_dev_get(reg, 0);

    // buffer types: normal CPU + every extra buffer type the CPU device exposes
    ggml_backend_buffer_type_t bufts[8]; int nb = 0;
    bufts[nb++] = ggml_backend_dev_buffer_type(dev);
    ggml_backend_dev_get_extra_bufts_t get_extra =
        (ggml_backend_dev_get_extra_bufts_t) ggml_backend_reg_get_proc_address(reg, "ggml_backend_dev_get_extra_bufts");
    if (get_extra) {
        for (ggml_backend_buffer_type_t * p = get_extra(dev); p && *p && nb < 8; p++) bufts[nb++] = *p;
    }
    printf("# ggml CPU backend, %d threads, W = %d x %d, reps=%d warm=%d flush=%zuMiB; buffer types:", nth, NROWS, NCOLS, reps, warm, flush_mib);
    for (int b = 0; b < nb; b++) printf(" %s", ggml_backend_buft_name(bufts[b]));
    printf("\n");

    // Gaussian W and x (fixed seed)
    float * Wf = malloc((size_t) NROWS * NCOLS * sizeof(float));
    for (size_t k = 0; k < (size_t) NROWS * NCOLS; k++) Wf[k] = grand();
    float * x = malloc(NCOLS * sizeof(float));
    for (int k = 0; k < NCOLS; k++) x[k] = grand();
    float * yref = malloc(NROWS * sizeof(float));
    float * y    = malloc(NROWS * sizeof(float));

    printf("%-7s %-11s %8s %9s %8s %8s %11s  %s\n", "type", "buffer", "W_MiB", "med_us", "min_us", "GB/s", "rel_vs_CPU", "note");
    for (int ti = 0; ti < ntypes; ti++) {
        const enum ggml_type type = type_from_name(types[ti]);
        const size_t rs = ggml_row_size(type, NCOLS);
        char * Wq = malloc(rs * NROWS);
        #pragma omp parallel for schedule(dynamic)
        for (int r0 = 0; r0 < NROWS; r0 += 256)
            ggml_quantize_chunk(type, Wf, Wq, (int64_t) r0 * NCOLS, 256, NCOLS, NULL);

        for (int b = 0; b < nb; b++) {
            size_t wbytes = 0; const char * note; double tmin = 0;
            double us = bench(be, dev, bufts[b], type, Wq, x, b == 0 ? yref : y, reps, warm, &wbytes, &note, &tmin);
            if (us < 0) {
                printf("%-7s %-11s %8.2f %9s %8s %8s %11s  %s\n", types[ti], ggml_backend_buft_name(bufts[b]), wbytes / 1048576.0, "-", "-", "-", "-", note);
                continue;
            }
            double rel = 0;
            if (b > 0) {
                double e = 0, n2 = 0;
                for (int k = 0; k < NROWS; k++) { double d = (double) y[k] - yref[k]; e += d * d; n2 += (double) yref[k] * yref[k]; }
                rel = sqrt(e / n2);
            }
            // GB/s (from the median) of weight bytes actually stored in that buffer (packed formats may be slightly larger)
            printf("%-7s %-11s %8.2f %9.1f %8.1f %8.1f %11.2e  %s\n", types[ti], ggml_backend_buft_name(bufts[b]),
                   wbytes / 1048576.0, us, tmin, wbytes / us * 1e-3, rel, note);
            fflush(stdout);
        }
        free(Wq);
    }
    ggml_backend_free(be);
    return 0;
}
