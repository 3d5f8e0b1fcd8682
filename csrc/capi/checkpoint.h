// An Ember checkpoint (a safetensors file) read for the C API: its tensors and its metadata,
// every offset, size and dtype checked before anything is used. A damaged or foreign file is an
// IoError naming it.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace ember::capi {

struct StoredTensor {
  std::string dtype;           // safetensors' name: "F32", "BF16", "I8", "U8", "I32", "I64", ...
  std::vector<int64_t> shape;
  const unsigned char* data;   // into the file's bytes
  int64_t elements;
};

class Checkpoint {
 public:
  // Reads the whole file at `path`; checks the header and that it is an Ember checkpoint.
  explicit Checkpoint(const char* path);
  Checkpoint(const Checkpoint&) = delete;  // the tensors point into bytes_
  Checkpoint& operator=(const Checkpoint&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, StoredTensor>& tensors() const { return tensors_; }
  // The metadata value under key (nullptr when absent).
  const std::string* metadata(const std::string& key) const;

 private:
  std::string path_;
  std::vector<unsigned char> bytes_;
  std::map<std::string, StoredTensor> tensors_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace ember::capi
