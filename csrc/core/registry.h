// The dispatch table: the only place that chooses which implementation of an
// op runs. An entry is (op, device, isa[, feature]) -> a pointer to that
// implementation's descriptor (a function, or a struct of micro-kernels and
// blocking sizes). A lookup at a given ISA takes the highest registered level
// not above it, so an op with only a generic entry runs everywhere.
//
// Core holds the lookup, not the rows: each op registers its own rows from
// ops/<op>/<op>_registry.cpp with a static KernelRegistrar, so core never
// includes ops/. The rows are appended while the module is loaded (static
// initialisation, one thread) into a table that is built on first use, so
// the order in which the registrars run does not matter; every lookup comes
// later, from a kernel call.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "core/cpu_features.h"
#include "core/device.h"

namespace ember {

// The CPU features an entry needs beyond its ISA level (checked at lookup). Of the rows of one
// op at one level whose features are present, the one with the highest Feature runs.
enum class Feature { none, avx512_vnni, avx512_vnni_vbmi };

struct KernelEntry {
  const char* op;
  Device device;
  Isa isa;
  const void* impl;
  Feature feature = Feature::none;
};

// Lets the dispatch use a CPU feature the CPU has ("avx512_vnni" or "avx512_vbmi"), or not: with
// allowed = false the rows that need it are passed over, so one machine can test every row.
// Returns whether it was allowed; throws std::invalid_argument for another name.
bool allow_cpu_feature(const std::string& name, bool allowed);

// Appends rows to the table; throws std::logic_error for a row that repeats
// an (op, device, isa, feature) already registered.
void register_kernels(const KernelEntry* rows, size_t count);

// One per op, at namespace scope in its <op>_registry.cpp:
//   const KernelRegistrar registrar(kRows);
struct KernelRegistrar {
  template <size_t N>
  explicit KernelRegistrar(const KernelEntry (&rows)[N]) {
    register_kernels(rows, N);
  }
};

// The ISA used by CPU kernels: EMBER_ISA if set (validated at import),
// otherwise the best the CPU supports. Read by the bindings, once per call,
// and passed down; kernels never read it themselves. set_active_isa() throws
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
const T& lookup(const char* op, Isa isa, Device device = Device::cpu) {
  return *static_cast<const T*>(lookup_impl(op, device, isa));
}

// For ops registered as a plain function pointer of type Fn.
template <class Fn>
Fn lookup_fn(const char* op, Isa isa, Device device = Device::cpu) {
  return reinterpret_cast<Fn>(lookup_impl(op, device, isa));
}

// (op, isa) pairs of the CPU entries, sorted, for ember.info().
std::vector<std::pair<std::string, std::string>> registered_kernels();

}  // namespace ember
