// The C API's runtime functions: version, threads, ISA, status strings, the last error.
#include "capi/common.h"
#include "core/registry.h"
#include "core/threads.h"

#ifndef EMBER_VERSION
#define EMBER_VERSION "unknown"
#endif

using namespace ember::capi;

extern "C" {

int ember_abi_version(void) { return EMBER_ABI_VERSION; }

const char* ember_version(void) { return EMBER_VERSION; }

const char* ember_last_error(void) { return last_error(); }

const char* ember_status_string(int status) {
  switch (status) {
    case EMBER_OK: return "ok";
    case EMBER_ERROR_INVALID_ARGUMENT: return "invalid argument";
    case EMBER_ERROR_UNSUPPORTED: return "unsupported";
    case EMBER_ERROR_OUT_OF_MEMORY: return "out of memory";
    case EMBER_ERROR_INTERNAL: return "internal error";
    case EMBER_ERROR_IO: return "i/o error";
  }
  return "unknown status";
}

int ember_get_num_threads(void) {
  int n = 1;
  guarded("ember_get_num_threads", [&] { n = threads(); });
  return n;
}

ember_status ember_set_num_threads(int n) {
  return guarded("ember_set_num_threads", [&] {
    if (n < 1 || n > 1024) invalid("n must be between 1 and 1024, got ", n);
    ember::set_num_threads(n);
  });
}

const char* ember_isa(void) {
  const char* name = "generic";
  guarded("ember_isa", [&] { name = ember::isa_name(active_isa()); });
  return name;
}

ember_status ember_set_isa(const char* name) {
  return guarded("ember_set_isa", [&] {
    if (name == nullptr) invalid("name is NULL");
    const ember::Isa isa = ember::parse_isa(name);  // an unknown name: std::invalid_argument
    if (!ember::isa_supported(isa))
      throw Unsupported(ember::detail::concat("ISA '", name, "' is not supported by this CPU"));
    set_isa(isa);
  });
}

}  // extern "C"
