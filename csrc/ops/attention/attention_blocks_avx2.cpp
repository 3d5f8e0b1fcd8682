// The attention kernels compiled for avx2: a 2 x 32 register tile (8 of the 16 ymm registers).
#include "ops/attention/attention_blocks_impl.h"

namespace ember::attention {

extern const Kernels blocks_avx2 = {fwd_block<Tile<2, 2>>, bwd_group<Tile<2, 2>>, decode};

}  // namespace ember::attention
