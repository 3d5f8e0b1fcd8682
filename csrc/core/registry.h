// The dispatch table: the only place that chooses which implementation of an
// op runs. An entry is (op, device, isa) -> a pointer to that implementation's
// descriptor (a function, or a struct of micro-kernels and blocking sizes).
// A lookup at a given ISA takes the highest registered level not above it, so
// an op with only a generic entry runs everywhere.
#pragma once

#include <string>
#include <vector>

#include "core/cpu_features.h"
#include "core/device.h"

namespace ember {

// A CPU feature an entry needs beyond its ISA level (checked at lookup).
enum class Feature { none, avx512_vnni };

struct KernelEntry {
  const char* op;
  Device device;
  Isa isa;
  const void* impl;
  Feature feature = Feature::none;
};

// The ISA used by CPU kernels: EMBER_ISA if set (validated at import),
// otherwise the best the CPU supports. set_active_isa() throws
// std::invalid_argument if the CPU lacks the level asked for.
Isa active_isa();
void set_active_isa(Isa isa);
// Reads EMBER_ISA; throws std::invalid_argument for an unknown or unsupported value.
void init_isa_from_env();

// The implementation of `op` on `device` for the highest level <= isa among
// the entries whose extra feature (if any) the CPU has. Throws
// std::logic_error if none is registered.
const void* lookup_impl(const char* op, Device device, Isa isa);

// For ops registered as a descriptor object.
template <class T>
const T& lookup(const char* op, Isa isa = active_isa(), Device device = Device::cpu) {
  return *static_cast<const T*>(lookup_impl(op, device, isa));
}

// For ops registered as a plain function pointer of type Fn.
template <class Fn>
Fn lookup_fn(const char* op, Isa isa = active_isa(), Device device = Device::cpu) {
  return reinterpret_cast<Fn>(lookup_impl(op, device, isa));
}

// (op, isa) pairs, for ember.info().
std::vector<std::pair<std::string, std::string>> registered_kernels();

}  // namespace ember
