// Where a kernel's memory lives. Devices are data, not compile-time switches:
// the registry keys every implementation by (op, device, isa).
#pragma once

#include <cstdint>

namespace ember {

enum class Device : uint8_t { cpu, cuda };

}  // namespace ember
