// The attention kernels compiled for avx2: a 6 x 16 register tile (12 of the 16 ymm registers).
#include "ops/attention/attention_blocks_impl.h"

namespace ember::attention {

extern const Kernels blocks_avx2 = {fwd_block<Tile<6, 1>>, bwd_group<Tile<6, 1>>, decode};

}  // namespace ember::attention
