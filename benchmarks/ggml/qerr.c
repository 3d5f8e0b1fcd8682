// qerr: quantization error of a float32 matrix (and of a mat-vec product) for several ggml types.
// usage: qerr W.f32 rows cols [x.f32]
//   W.f32: raw little-endian float32, row-major rows x cols (each row = one output, length cols)
//   x.f32: raw float32 vector of length cols (optional)
#include "ggml.h"
#include "ggml-cpu.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float * read_f32(const char * path, size_t n) {
    FILE * f = fopen(path, "rb");
    if (!f) { perror(path); exit(1); }
    float * p = malloc(n * sizeof(float));
    if (fread(p, sizeof(float), n, f) != n) { fprintf(stderr, "%s: short read (need %zu floats)\n", path, n); exit(1); }
    fclose(f);
    return p;
}

// vec_dot types without a to_float in ggml's type traits (q8_1, q8_K): dequantize by hand
typedef struct { uint16_t d, s; int8_t qs[32]; } my_q8_1;
typedef struct { float d; int8_t qs[256]; int16_t bsums[16]; } my_q8_K;

static void dequant_any(enum ggml_type t, const void * src, float * dst, int64_t n) {
    const struct ggml_type_traits * tr = ggml_get_type_traits(t);
    if (tr->to_float) { tr->to_float(src, dst, n); return; }
    if (t == GGML_TYPE_Q8_1) {
        const my_q8_1 * b = src;
        for (int64_t i = 0; i < n / 32; i++) {
            float d = ggml_fp16_to_fp32(b[i].d);
            for (int j = 0; j < 32; j++) dst[i*32 + j] = d * b[i].qs[j];
        }
        return;
    }
    if (t == GGML_TYPE_Q8_K) {
        const my_q8_K * b = src;
        for (int64_t i = 0; i < n / 256; i++)
            for (int j = 0; j < 256; j++) dst[i*256 + j] = b[i].d * b[i].qs[j];
        return;
    }
    fprintf(stderr, "no dequantizer for %s\n", ggml_type_name(t)); exit(1);
}

int main(int argc, char ** argv) {
    if (argc < 4) { fprintf(stderr, "usage: %s W.f32 rows cols [x.f32]\n", argv[0]); return 1; }
    const int64_t rows = atoll(argv[2]), cols = atoll(argv[3]);
    const size_t n = (size_t) rows * cols;
    float * W = read_f32(argv[1], n);
    float * x = argc > 4 ? read_f32(argv[4], cols) : NULL;

    ggml_cpu_init(); // fp16 tables, CPU type traits

    double nW = 0; for (size_t i = 0; i < n; i++) nW += (double) W[i] * W[i];
    nW = sqrt(nW);

    double * y_ref = NULL; double ny = 0;
    if (x) {
        y_ref = malloc(rows * sizeof(double));
        for (int64_t r = 0; r < rows; r++) {
            double s = 0; const float * w = W + r * cols;
            for (int64_t c = 0; c < cols; c++) s += (double) w[c] * x[c];
            y_ref[r] = s; ny += s * s;
        }
        ny = sqrt(ny);
    }

    const enum ggml_type types[] = { GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K,
                                     GGML_TYPE_IQ4_NL, GGML_TYPE_IQ4_XS, GGML_TYPE_Q8_0 };
    float * D  = malloc(n * sizeof(float));
    float * xq = malloc(cols * sizeof(float));

    printf("%-8s %7s %12s %10s %12s\n", "type", "bpw", "rel_frob", "vec_dot", x ? "rel_matvec" : "");
    for (size_t ti = 0; ti < sizeof(types)/sizeof(types[0]); ti++) {
        const enum ggml_type t = types[ti];
        if (cols % ggml_blck_size(t)) { printf("%-8s cols %% %lld != 0, skipped\n", ggml_type_name(t), (long long) ggml_blck_size(t)); continue; }
        if (ggml_quantize_requires_imatrix(t)) { printf("%-8s requires imatrix, skipped\n", ggml_type_name(t)); continue; }
        ggml_quantize_init(t);
        const size_t rs = ggml_row_size(t, cols);
        char * Q = malloc(rs * rows);
        // quantize in row chunks (parallel if built with -fopenmp)
        const int64_t CH = 256;
        #pragma omp parallel for schedule(dynamic)
        for (int64_t r0 = 0; r0 < rows; r0 += CH) {
            const int64_t nr = r0 + CH <= rows ? CH : rows - r0;
            // start (in elements) offsets both src and dst inside ggml_quantize_chunk
            ggml_quantize_chunk(t, W, Q, r0 * cols, nr, cols, NULL);
        }
        const ggml_to_float_t to_float = ggml_get_type_traits(t)->to_float;
        #pragma omp parallel for
        for (int64_t r = 0; r < rows; r++) to_float(Q + r * rs, D + r * cols, cols);

        double e = 0;
        for (size_t i = 0; i < n; i++) { double d = (double) W[i] - D[i]; e += d * d; }
        const double bpw = (double) rs * 8.0 / cols;

        const enum ggml_type vt = ggml_get_type_traits_cpu(t)->vec_dot_type;
        printf("%-8s %7.4f %12.6e %10s", ggml_type_name(t), bpw, sqrt(e) / nW, ggml_type_name(vt));
        if (x) {
            void * xb = malloc(ggml_row_size(vt, cols));
            ggml_get_type_traits_cpu(vt)->from_float(x, xb, cols);
            dequant_any(vt, xb, xq, cols);
            free(xb);
            double ee = 0;
            #pragma omp parallel for reduction(+:ee)
            for (int64_t r = 0; r < rows; r++) {
                double s = 0; const float * d = D + r * cols;
                for (int64_t c = 0; c < cols; c++) s += (double) d[c] * xq[c];
                ee += (s - y_ref[r]) * (s - y_ref[r]);
            }
            printf(" %12.6e", sqrt(ee) / ny);
        }
        printf("\n");
        fflush(stdout);
        free(Q);
    }
    ggml_quantize_free();
    return 0;
}
