// The quantized-matmul kernels for AVX-512 with VNNI and VBMI (qmatmul_vnni_impl.h): the
// codebook's indices are looked up with vpermb, whose 64-entry table (the 16-value codebook four
// times over) reads only an index's low six bits -- so neither nibble needs masking, two vector
// operations fewer per 64 bytes of weights than vpshufb's lookup. The other formats are the
// VNNI set's.
#include "ops/qmatmul/qmatmul_avx512.h"  // first: it includes the intrinsics

namespace ember::qmatmul {
namespace {

struct CodebookLookup {
  __m512i table;  // the codebook + 128 in each 16-byte lane: entry i of 64 is codebook[i % 16] + 128
  void operator()(__m512i v, __m512i& lo, __m512i& hi) const {
    lo = _mm512_permutexvar_epi8(v, table);                         // bits 0-5: the low nibble, then 2 ignored
    hi = _mm512_permutexvar_epi8(_mm512_srli_epi16(v, 4), table);  // bits 0-3: the high nibble
  }
};

}  // namespace
}  // namespace ember::qmatmul

#include "ops/qmatmul/qmatmul_vnni_impl.h"

namespace ember::qmatmul {

extern const Kernels kernels_avx512vbmi = {quantize_rows, int8_tile, int8g_tile, int4_tile, int4cb_tile};

}  // namespace ember::qmatmul
