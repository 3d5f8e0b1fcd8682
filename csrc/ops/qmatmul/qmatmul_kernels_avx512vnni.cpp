// The quantized-matmul kernels for AVX-512 with VNNI (qmatmul_vnni_impl.h), the codebook's
// indices looked up with vpshufb.
#include "ops/qmatmul/qmatmul_avx512.h"  // first: it includes the intrinsics

namespace ember::qmatmul {
namespace {

// vpshufb on the low and the high nibbles, each masked to 4 bits (a set top bit would give 0).
struct CodebookLookup {
  __m512i table;  // the codebook + 128 in each 16-byte lane
  void operator()(__m512i v, __m512i& lo, __m512i& hi) const { codebook_values(table, v, lo, hi); }
};

}  // namespace
}  // namespace ember::qmatmul

#include "ops/qmatmul/qmatmul_vnni_impl.h"

namespace ember::qmatmul {

extern const Kernels kernels_avx512vnni = {quantize_rows, int8_tile, int8g_tile, int4_tile, int4cb_tile};

}  // namespace ember::qmatmul
