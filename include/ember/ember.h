/*
 * Ember's C API: the same CPU kernels the Python module runs, for C and C++ programs and other
 * languages' foreign-function interfaces. C99; no C++ types or exceptions cross it.
 *
 * Every function that can fail returns an ember_status; on failure ember_last_error() gives a
 * message naming the argument at fault (per thread, valid until this thread's next Ember call).
 * Memory always belongs to the caller: Ember never keeps a pointer after a call returns.
 * Matrices are row-major float32 with a leading dimension (the distance between rows, in
 * elements); images are NCHW float32, contiguous.
 *
 * Build against it with CMake (find_package(Ember) then target_link_libraries(app Ember::ember);
 * python -c "import ember; print(ember.get_cmake_dir())" says where the package is), with
 * pkg-config (ember.pc beside the library), or by hand: -I$(ember include) -L$(ember lib) -lember.
 */
#ifndef EMBER_EMBER_H
#define EMBER_EMBER_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define EMBER_API __declspec(dllimport)
#else
#define EMBER_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* The version of this interface: a program built against version V runs with a library whose
 * ember_abi_version() is V (functions are only ever added within a version). */
#define EMBER_ABI_VERSION 1

typedef enum ember_status {
  EMBER_OK = 0,
  EMBER_ERROR_INVALID_ARGUMENT = 1, /* a null pointer, a bad size or stride, overlapping buffers */
  EMBER_ERROR_UNSUPPORTED = 2,      /* not available on this CPU or in this build */
  EMBER_ERROR_OUT_OF_MEMORY = 3,
  EMBER_ERROR_INTERNAL = 4
} ember_status;

/* ---------------------------------------------------------------- runtime */
EMBER_API int ember_abi_version(void);
EMBER_API const char* ember_version(void);           /* the package version, such as "0.1.0" */
EMBER_API const char* ember_last_error(void);        /* "" when this thread's last call succeeded */
EMBER_API const char* ember_status_string(ember_status status);
EMBER_API int ember_get_num_threads(void);
EMBER_API ember_status ember_set_num_threads(int n); /* 1 to 1024 */
EMBER_API const char* ember_isa(void);               /* the instruction set kernels use: "avx512", ... */
EMBER_API ember_status ember_set_isa(const char* name); /* "generic", "avx2", "avx512", "avx512_bf16", "amx" */

/* ---------------------------------------------------------------- kernels */

/* C = act(alpha * op(A) @ op(B) + beta * C + bias): op(A) is m x k (A stored k x m when
 * trans_a), op(B) k x n (B stored n x k when trans_b), C m x n with ldc >= n; bias is n values
 * or NULL; act is ReLU when relu is nonzero. With beta == 0, C is not read. C must not overlap
 * A, B or bias. */
EMBER_API ember_status ember_gemm_f32(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                                      const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                                      float* c, int64_t ldc, const float* bias, int relu);

/* A 2-D convolution's shapes: input n x c x h x w, o output channels, kh x kw kernel, strides,
 * padding on each side, dilations, groups (dividing c and o). */
typedef struct ember_conv2d_shape {
  int64_t n, c, h, w;
  int64_t o, kh, kw;
  int64_t stride_h, stride_w;
  int64_t pad_top, pad_left, pad_bottom, pad_right;
  int64_t dilation_h, dilation_w;
  int64_t groups;
} ember_conv2d_shape;

/* The output's height and width for `shape` (checked as ember_conv2d_forward_f32 checks it). */
EMBER_API ember_status ember_conv2d_output_size(const ember_conv2d_shape* shape, int64_t* out_h, int64_t* out_w);

/* y = act(conv2d(x, w) + bias): x n x c x h x w, w o x (c / groups) x kh x kw, bias o values or
 * NULL, y n x o x out_h x out_w; act is ReLU when relu is nonzero. y must not overlap the inputs. */
EMBER_API ember_status ember_conv2d_forward_f32(const ember_conv2d_shape* shape, const float* x, const float* w,
                                                const float* bias, int relu, float* y);

#ifdef __cplusplus
}
#endif

#endif /* EMBER_EMBER_H */
