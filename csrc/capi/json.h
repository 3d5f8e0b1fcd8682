// A strict JSON reader for the text a checkpoint carries (its safetensors header and the model
// description inside it): RFC 8259 only, nesting at most 64 deep, every error a
// std::invalid_argument saying where. Numbers keep whether they were written as integers.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ember::capi::json {

struct Value {
  enum class Kind { null, boolean, number, string, array, object } kind = Kind::null;
  bool boolean = false;
  double number = 0;
  bool integral = false;  // a number written without fraction or exponent, exact in int64
  int64_t integer = 0;    // its value when integral
  std::string string;
  std::vector<Value> items;                          // array
  std::vector<std::pair<std::string, Value>> members;  // object, in file order

  // The member called key (nullptr when absent or not an object).
  const Value* find(std::string_view key) const;
  bool is(Kind k) const { return kind == k; }
};

// The value `text` holds (and nothing after it but white space).
Value parse(std::string_view text);

}  // namespace ember::capi::json
