// The attention kernels compiled for generic: a 2 x 16 register tile (8 of the 16 xmm registers).
#include "ops/attention/attention_blocks_impl.h"

namespace ember::attention {

extern const Kernels blocks_generic = {fwd_block<Tile<2, 1>>, bwd_group<Tile<2, 1>>, decode};

}  // namespace ember::attention
