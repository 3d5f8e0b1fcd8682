/*
 * Ember's C API: the same CPU kernels the Python module runs, for C and C++ programs and other
 * languages' foreign-function interfaces. C99; no C++ types or exceptions cross it.
 *
 * Every function that can fail returns an ember_status; on failure ember_last_error() gives a
 * message naming the argument at fault (per thread, valid until this thread's next Ember call).
 * Memory always belongs to the caller: Ember never keeps a pointer after a call returns.
 * Matrices are row-major float32 with a leading dimension (the distance between rows, in
 * elements); images are NCHW float32, contiguous. Buffers are aligned to their element size.
 * Every function may be called from several threads at once.
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
  EMBER_ERROR_INTERNAL = 4,
  EMBER_ERROR_IO = 5                /* a file that cannot be read, or is damaged or not what it claims */
} ember_status;

/* ---------------------------------------------------------------- runtime */
EMBER_API int ember_abi_version(void);
EMBER_API const char* ember_version(void);           /* the package version, such as "0.1.0" */
EMBER_API const char* ember_last_error(void); /* "" after a success of this thread's last call of a function
                                                 that returns an ember_status (or of ember_isa or
                                                 ember_get_num_threads); the other functions leave it be */
EMBER_API const char* ember_status_string(int status); /* an ember_status; any int is safe */
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

/* ember_gemm_f32 with op(A) and op(B) in bf16 (their uint16 bit patterns), the products summed
 * in float32 (AMX tiles or vdpbf16ps where the CPU has them); C, bias, alpha and beta float32.
 * Subnormal bf16 inputs may be read as zero. */
EMBER_API ember_status ember_gemm_bf16(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                                       const uint16_t* a, int64_t lda, const uint16_t* b, int64_t ldb, float beta,
                                       float* c, int64_t ldc, const float* bias, int relu);

/* float32 to bf16 bit patterns (rounding to nearest even; NaN stays NaN) and back (exact), n
 * values; the buffers must not overlap. */
EMBER_API ember_status ember_bf16_from_f32(const float* x, int64_t n, uint16_t* out);
EMBER_API ember_status ember_f32_from_bf16(const uint16_t* x, int64_t n, float* out);

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

/* The gradients of ember_conv2d_forward_f32 for dy (n x o x out_h x out_w): dx (n x c x h x w)
 * from the weight, and dw (o x (c / groups) x kh x kw) and db (o values, or NULL) from the
 * input. Outputs are overwritten and must not overlap the inputs or each other. */
EMBER_API ember_status ember_conv2d_backward_data_f32(const ember_conv2d_shape* shape, const float* dy,
                                                      const float* w, float* dx);
EMBER_API ember_status ember_conv2d_backward_weight_f32(const ember_conv2d_shape* shape, const float* x,
                                                        const float* dy, float* dw, float* db);

/* 2-D pooling of an n x c x h x w input by kh x kw windows, PyTorch's rules: the output's size
 * along each axis is floor((size + 2 pad - dilation (k - 1) - 1) / stride) + 1 (rounded up
 * instead when ceil_mode, without starting a window in the right or bottom padding). Average
 * pooling takes no dilation (leave it 1). Every window must reach the input. */
typedef struct ember_pool2d_shape {
  int64_t n, c, h, w;
  int64_t kh, kw;
  int64_t stride_h, stride_w;
  int64_t pad_h, pad_w; /* on each side */
  int64_t dilation_h, dilation_w;
  int ceil_mode;
} ember_pool2d_shape;

EMBER_API ember_status ember_pool2d_output_size(const ember_pool2d_shape* shape, int64_t* out_h, int64_t* out_w);

/* y = the maximum of each window (padding never chosen, the first maximum on ties, NaN wins);
 * indices (n x c x out_h x out_w, or NULL) get each maximum's flat index h * w + col in its
 * plane. The backward sets dx = 0, then adds each dy at its index (every index is checked). */
EMBER_API ember_status ember_max_pool2d_forward_f32(const ember_pool2d_shape* shape, const float* x, float* y,
                                                    int64_t* indices);
EMBER_API ember_status ember_max_pool2d_backward_f32(const ember_pool2d_shape* shape, const float* dy,
                                                     const int64_t* indices, float* dx);

/* y = the mean of each window clipped to the padded input, divided by that window's size when
 * count_include_pad is nonzero, else by the number of input elements it covers. */
EMBER_API ember_status ember_avg_pool2d_forward_f32(const ember_pool2d_shape* shape, int count_include_pad,
                                                    const float* x, float* y);
EMBER_API ember_status ember_avg_pool2d_backward_f32(const ember_pool2d_shape* shape, int count_include_pad,
                                                     const float* dy, float* dx);

/* Adaptive average pooling of n x c x h x w to n x c x out_h x out_w (window i spans rows
 * floor(i h / out_h) to ceil((i + 1) h / out_h), likewise columns); 1 x 1 is global average
 * pooling. h, w, out_h and out_w must be >= 1. */
EMBER_API ember_status ember_adaptive_avg_pool2d_forward_f32(int64_t n, int64_t c, int64_t h, int64_t w,
                                                             int64_t out_h, int64_t out_w, const float* x, float* y);
EMBER_API ember_status ember_adaptive_avg_pool2d_backward_f32(int64_t n, int64_t c, int64_t h, int64_t w,
                                                              int64_t out_h, int64_t out_w, const float* dy,
                                                              float* dx);

/* ---------------------------------------------------------------- quantized matmul */

/* A weight (n outputs x k inputs, k <= 65536) quantized symmetrically and packed for Ember's
 * integer kernels: int8 (bits 8, one scale per output), int4 (bits 4, one scale per output and
 * group of group_size inputs, a multiple of 8 up to 4096; 32 is usual) or int8 in groups (the
 * _int8_groups functions: one 16-bit e6m10 scale per output and group; group_size 32 is 8.5 bits
 * per weight), the same formats as ember.quant's (a checkpoint's weight_data, weight_scales and
 * weight_colsum). */
typedef struct ember_qweight ember_qweight;

/* Quantizes w (n x k float32, row stride ldw, every value finite): int8 scales are max|w| / 127;
 * int4 scales the clipping level of max|w| / 7 (1 down to 0.75 of it) of least rounding error.
 * group_size is read for int4 only. */
EMBER_API ember_status ember_qweight_quantize_f32(const float* w, int64_t n, int64_t k, int64_t ldw, int bits,
                                                  int64_t group_size, ember_qweight** out);

/* A weight from its packed arrays (copied and checked: sizes, scales finite and > 0, int8 values
 * within [-127, 127] and colsum their column sums; colsum is NULL with count 0 for int4). */
EMBER_API ember_status ember_qweight_from_packed(int bits, int64_t n, int64_t k, int64_t group_size, const void* data,
                                                 int64_t data_bytes, const float* scales, int64_t scales_count,
                                                 const int32_t* colsum, int64_t colsum_count, ember_qweight** out);

/* The packed arrays (valid while the weight lives), to store them. */
EMBER_API ember_status ember_qweight_packed(const ember_qweight* w, const void** data, int64_t* data_bytes,
                                            const float** scales, int64_t* scales_count, const int32_t** colsum,
                                            int64_t* colsum_count);
EMBER_API void ember_qweight_free(ember_qweight* w); /* NULL is allowed */

/* int8 in groups of group_size inputs (a multiple of 8 up to 4096): per group the e6m10 scale
 * near max|w| / 127 of least rounding error; |w| above 1.09e12 is EMBER_ERROR_INVALID_ARGUMENT.
 * The packed arrays: q + 128 as bytes (never 0) and the scales' 16-bit patterns (an e6m10 value
 * e:m is 2^(e - 31) (1 + m / 1024), e the high 6 bits). ember_qweight_packed refuses this format
 * and ember_qweight_packed_int8_groups the others; ember_qmatmul_f32 takes every format. */
EMBER_API ember_status ember_qweight_quantize_int8_groups_f32(const float* w, int64_t n, int64_t k, int64_t ldw,
                                                              int64_t group_size, ember_qweight** out);
EMBER_API ember_status ember_qweight_from_packed_int8_groups(int64_t n, int64_t k, int64_t group_size,
                                                             const void* data, int64_t data_bytes,
                                                             const uint16_t* scales, int64_t scales_count,
                                                             ember_qweight** out);
EMBER_API ember_status ember_qweight_packed_int8_groups(const ember_qweight* w, const void** data,
                                                        int64_t* data_bytes, const uint16_t** scales,
                                                        int64_t* scales_count);

/* y (m x n, row stride ldy) = x (m x k float32, row stride ldx) @ dequant(w)^T + bias (n values,
 * or NULL), the activations quantized to int8 per row (int8 weights) or per row and group (int4,
 * int8 in groups)
 * inside the call; the same bits as Python's QuantizedWeight.matmul on every ISA. x holding NaN
 * or infinity is EMBER_ERROR_INVALID_ARGUMENT. */
EMBER_API ember_status ember_qmatmul_f32(const ember_qweight* w, int64_t m, const float* x, int64_t ldx,
                                         const float* bias, float* y, int64_t ldy);

/* ---------------------------------------------------------------- training */

/* Softmax cross-entropy of logits (batch x classes, row-major) as PyTorch's F.cross_entropy
 * computes it: against class indices (target, batch values; a row whose target is ignore_index
 * counts for nothing) or class probabilities (target_probs, batch x classes) -- exactly one of
 * the two -- with optional class weights (classes values, or NULL) and label smoothing in [0, 1].
 * The reduction: EMBER_REDUCTION_MEAN divides the sum by the targets' total weight (the batch for
 * probabilities; NaN when every target is ignored), SUM adds the rows, NONE keeps them. */
typedef enum ember_reduction {
  EMBER_REDUCTION_NONE = 0,
  EMBER_REDUCTION_MEAN = 1,
  EMBER_REDUCTION_SUM = 2
} ember_reduction;

typedef struct ember_cross_entropy_args {
  int64_t batch, classes;
  const int64_t* target;     /* batch class indices, or NULL */
  const float* target_probs; /* batch x classes probabilities, or NULL */
  const float* weight;       /* classes weights, or NULL */
  float label_smoothing;
  int64_t ignore_index;      /* -100 as in PyTorch, or any value */
  int reduction;             /* an ember_reduction (an int, so that any value a caller stores is read safely) */
} ember_cross_entropy_args;

/* loss = the reduced loss (1 value; batch values for EMBER_REDUCTION_NONE). lse (batch doubles,
 * or NULL) receives each row's log-sum-exp, which the backward can reuse. One read of the
 * logits; nothing of their size is written. */
EMBER_API ember_status ember_cross_entropy_forward_f32(const ember_cross_entropy_args* args, const float* logits,
                                                       float* loss, double* lse);

/* dlogits = the gradient of the loss for grad_loss (1 value; batch values for
 * EMBER_REDUCTION_NONE; NULL means 1), given the forward's lse (NULL: computed again). dlogits
 * may be logits itself (in place); it must not overlap the other inputs. */
EMBER_API ember_status ember_cross_entropy_backward_f32(const ember_cross_entropy_args* args, const float* logits,
                                                        const double* lse, const float* grad_loss, float* dlogits);

/* Optimizer steps, PyTorch's formulas (torch.optim, single-tensor), over a list of parameters in
 * one pass with the threads spread over all their elements. Every array of every tensor must be
 * distinct memory; state starts at zero (Adam) and steps count from 1. */
typedef struct ember_adam_hyper {
  float lr, beta1, beta2, eps, weight_decay; /* lr, eps, weight_decay >= 0; betas in [0, 1) */
  int decoupled;                             /* nonzero: AdamW's weight decay */
  int maximize;
} ember_adam_hyper;

typedef struct ember_adam_tensor {
  int64_t n;                /* elements */
  float* param;
  const float* grad;
  float* exp_avg;
  float* exp_avg_sq;
  float* max_exp_avg_sq;    /* AMSGrad's running maximum, or NULL (not AMSGrad) */
  int64_t step;             /* this parameter's step, >= 1 (bias corrections) */
} ember_adam_tensor;

/* With AMSGrad every tensor has max_exp_avg_sq, else none does. */
EMBER_API ember_status ember_adam_step_f32(const ember_adam_hyper* hyper, const ember_adam_tensor* tensors,
                                           int64_t count);

typedef struct ember_sgd_hyper {
  float lr, momentum, dampening, weight_decay; /* all >= 0 */
  int nesterov;                                /* needs momentum > 0 and dampening 0 */
  int maximize;
  int first; /* nonzero on the first step: the momentum buffers start from this step's direction */
} ember_sgd_hyper;

typedef struct ember_sgd_tensor {
  int64_t n;
  float* param;
  const float* grad;
  float* momentum_buffer; /* n floats when momentum > 0, else NULL */
} ember_sgd_tensor;

EMBER_API ember_status ember_sgd_step_f32(const ember_sgd_hyper* hyper, const ember_sgd_tensor* tensors,
                                          int64_t count);

/* ---------------------------------------------------------------- models */

/* An inference-only model loaded from an Ember checkpoint (a .safetensors file that ember.save or
 * `ember train` wrote, float or quantized): an nn.Sequential (nested ones too) of Conv2d, Linear,
 * QuantLinear (int8/int4), MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, BatchNorm1d/2d (running
 * statistics), LayerNorm, ReLU, LeakyReLU, Sigmoid, Tanh, GELU, SiLU, Softmax, Flatten, Dropout
 * (a no-op) and Identity. It runs the kernels the Python layers run, in the same order, so its
 * outputs equal Python's bit for bit for the convolution, linear, pooling, ReLU, GELU, BatchNorm
 * and quantized layers (the exponentials of Sigmoid, SiLU, Tanh, Softmax and LayerNorm's means
 * agree to a few units in the last place). A loaded model is read-only: several threads may run
 * it at once. */
typedef struct ember_model ember_model;

#define EMBER_MAX_DIMS 8

/* Loads the checkpoint at path into *model (set to NULL on failure). A missing, unreadable,
 * damaged or foreign file is EMBER_ERROR_IO; a layer this library cannot run is
 * EMBER_ERROR_UNSUPPORTED; either way the message names the file and the module. Release the
 * model with ember_model_free. */
EMBER_API ember_status ember_model_load(const char* path, ember_model** model);
EMBER_API void ember_model_free(ember_model* model); /* NULL is allowed */

/* The number of layers and a one-line description of layer i ("0 nn.Conv2d", ...), valid
 * while the model lives: 0 and NULL for a NULL model or an i outside [0, layers), which set no
 * error message. */
EMBER_API int64_t ember_model_num_layers(const ember_model* model);
EMBER_API const char* ember_model_layer(const ember_model* model, int64_t i);

/* The shape of the output for an input of `rank` (1 to EMBER_MAX_DIMS) dimensions `shape`:
 * *out_rank and out_shape[0 .. *out_rank) (out_shape has room for EMBER_MAX_DIMS). An input the
 * model cannot take is EMBER_ERROR_INVALID_ARGUMENT naming the first layer that refuses it. */
EMBER_API ember_status ember_model_output_shape(const ember_model* model, int rank, const int64_t* shape,
                                                int* out_rank, int64_t* out_shape);

/* y = the model applied to x (float32, C-contiguous, of the given shape); y has room for
 * y_size floats, which must be at least the output's element count, and must not overlap x. */
EMBER_API ember_status ember_model_forward(const ember_model* model, int rank, const int64_t* shape, const float* x,
                                           float* y, int64_t y_size);

#ifdef __cplusplus
}
#endif

#endif /* EMBER_EMBER_H */
