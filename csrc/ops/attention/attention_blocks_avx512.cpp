// The attention kernels compiled for avx512: a 6 x 64 register tile (24 of the 32 zmm registers).
#include "ops/attention/attention_blocks_impl.h"

namespace ember::attention {

extern const Kernels blocks_avx512 = {fwd_block<Tile<6, 4>>, bwd_group<Tile<6, 4>>, decode};

}  // namespace ember::attention
