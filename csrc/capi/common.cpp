// The C API's shared machinery (see common.h).
#include "capi/common.h"

#include <atomic>
#include <stdexcept>
#include <string>

#include "core/registry.h"
#include "core/threads.h"

namespace ember::capi {
namespace {

thread_local std::string t_error;

}  // namespace

ember_status finish(const char* fn, ember_status status, const char* message) {
  try {
    if (status == EMBER_OK)
      t_error.clear();
    else
      t_error.assign(fn).append(": ").append(message);
  } catch (...) {  // no memory left for the message: keep the status
  }
  return status;
}

void check_count(const char* name, int64_t v) {
  if (v < 0) invalid(name, " must be >= 0, got ", v);
}

int64_t span(const char* name, int64_t rows, int64_t cols, int64_t ld) {
  if (ld < cols || ld < 1) invalid("the leading dimension of ", name, " must be >= max(1, ", cols, "), got ", ld);
  if (rows == 0 || cols == 0) return 0;
  if (rows - 1 > (kMaxElements - cols) / ld) invalid(name, " (", rows, " x ", cols, ", ld ", ld, ") is too large");
  return (rows - 1) * ld + cols;
}

int64_t product(const char* name, std::initializer_list<int64_t> dims) {
  int64_t p = 1;
  for (int64_t d : dims) {
    if (d < 0) invalid(name, " has a negative size ", d);
    if (d != 0 && p > kMaxElements / d) invalid(name, " is too large");
    p *= d;
  }
  return p;
}

void check_pointer(const char* name, const void* p, int64_t elements, int64_t align) {
  if (elements > 0 && p == nullptr) invalid(name, " is NULL");
  if (p != nullptr && reinterpret_cast<std::uintptr_t>(p) % static_cast<std::uintptr_t>(align) != 0)
    invalid(name, " is not aligned to ", align, " bytes");
}

void check_apart(const char* out, const void* o, int64_t no_bytes, const char* in, const void* i, int64_t ni_bytes) {
  if (o == nullptr || i == nullptr || no_bytes <= 0 || ni_bytes <= 0) return;
  const auto po = reinterpret_cast<std::uintptr_t>(o), pi = reinterpret_cast<std::uintptr_t>(i);
  if (po < pi + static_cast<std::uintptr_t>(ni_bytes) && pi < po + static_cast<std::uintptr_t>(no_bytes))
    invalid(out, " must not share memory with ", in);
}

namespace {

std::atomic<bool> g_isa_set{false};  // ember_set_isa chose one: a bad EMBER_ISA no longer matters

// What reading EMBER_ISA said, once: "" when it named a usable ISA (or was unset).
const std::string& env_isa_error() {
  static const std::string error = [] {
    try {
      init_isa_from_env();
      return std::string();
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
  }();
  return error;
}

}  // namespace

Isa active_isa() {
  const std::string& error = env_isa_error();
  if (!error.empty() && !g_isa_set.load()) throw std::invalid_argument(error + " (or choose one with ember_set_isa)");
  return ember::active_isa();
}

void set_isa(Isa isa) {
  env_isa_error();  // read first, so that it can never override this choice later
  ember::set_active_isa(isa);
  g_isa_set.store(true);
}

int threads() { return get_num_threads(); }

const char* last_error() { return t_error.c_str(); }

}  // namespace ember::capi
