// What every C API function shares: exceptions turned into an ember_status and this thread's
// message, and the checks of raw pointers and sizes a C caller passes.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <stdexcept>

#include "core/check.h"
#include "core/cpu_features.h"
#include "ember/ember.h"

namespace ember::capi {

// Something this CPU, this build or this library cannot do (EMBER_ERROR_UNSUPPORTED).
struct Unsupported : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A file that cannot be read or is not what it claims (EMBER_ERROR_IO).
struct IoError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// An invalid argument: the message names it (EMBER_ERROR_INVALID_ARGUMENT).
template <class... Parts>
[[noreturn]] void invalid(const Parts&... parts) {
  throw std::invalid_argument(detail::concat(parts...));
}

// Records `fn`'s failure (or clears the message when status is EMBER_OK) and returns status.
ember_status finish(const char* fn, ember_status status, const char* message);

// Runs `body`, turning what it throws into a status and this thread's message.
template <class F>
ember_status guarded(const char* fn, F&& body) noexcept {
  try {
    body();
    return finish(fn, EMBER_OK, "");
  } catch (const Unsupported& e) {
    return finish(fn, EMBER_ERROR_UNSUPPORTED, e.what());
  } catch (const IoError& e) {
    return finish(fn, EMBER_ERROR_IO, e.what());
  } catch (const std::bad_alloc&) {
    return finish(fn, EMBER_ERROR_OUT_OF_MEMORY, "out of memory");
  } catch (const std::invalid_argument& e) {
    return finish(fn, EMBER_ERROR_INVALID_ARGUMENT, e.what());
  } catch (const std::exception& e) {
    return finish(fn, EMBER_ERROR_INTERNAL, e.what());
  } catch (...) {
    return finish(fn, EMBER_ERROR_INTERNAL, "an unknown error");
  }
}

// The most elements any array may have: a byte count of 16 x this still fits an int64.
constexpr int64_t kMaxElements = INT64_MAX / 16;

void check_count(const char* name, int64_t v);  // v >= 0

// rows x cols with leading dimension ld: the number of elements from the first to one past the
// last, checked against overflow.
int64_t span(const char* name, int64_t rows, int64_t cols, int64_t ld);

// The product of dims (each >= 0), checked against overflow; `name` names the array.
int64_t product(const char* name, std::initializer_list<int64_t> dims);

// A buffer of `elements` values of `align` bytes each: not NULL when it has elements, aligned.
void check_pointer(const char* name, const void* p, int64_t elements, int64_t align = 4);

// Output `out` (bytes [o, o + no_bytes)) must not share memory with input `in`.
void check_apart(const char* out, const void* o, int64_t no_bytes, const char* in, const void* i, int64_t ni_bytes);

// The ISA the kernels use: EMBER_ISA's (read at the first call, as ember._C does) or the one
// set_isa (ember_set_isa) chose; a bad EMBER_ISA makes active_isa throw until one is chosen.
// And the threads the kernels may take.
Isa active_isa();
void set_isa(Isa isa);
int threads();

// This thread's message ("" after a success).
const char* last_error();

}  // namespace ember::capi
