// Reading an Ember checkpoint (see checkpoint.h). The safetensors layout: 8 bytes (little-endian
// header length N), N bytes of JSON ({name: {dtype, shape, data_offsets}, "__metadata__":
// {key: string}}), then the tensors' bytes, each at its offsets from the data's start.
#include "capi/checkpoint.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "capi/common.h"
#include "capi/json.h"

namespace ember::capi {
namespace {

constexpr const char* kFormat = "ember-checkpoint-1";
constexpr uint64_t kMaxHeader = uint64_t(100) << 20;  // safetensors' own limit

int64_t itemsize(const std::string& dtype) {
  if (dtype == "F64" || dtype == "I64" || dtype == "U64") return 8;
  if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
  if (dtype == "F16" || dtype == "BF16" || dtype == "I16" || dtype == "U16") return 2;
  if (dtype == "I8" || dtype == "U8" || dtype == "BOOL" || dtype == "F8_E4M3" || dtype == "F8_E5M2") return 1;
  return 0;
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

}  // namespace

Checkpoint::Checkpoint(const char* path) : path_(path) {
  auto damaged = [&](const auto&... why) -> IoError {
    return IoError(detail::concat(path_, " is not a readable safetensors file (", why..., ")"));
  };
  // Non-blocking, so that a FIFO with no writer is refused below instead of waiting forever
  // (reads from a regular file are the same either way).
  const int fd = ::open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) throw IoError(detail::concat("cannot open ", path_, ": ", std::strerror(errno)));
  std::unique_ptr<std::FILE, FileCloser> file(::fdopen(fd, "rb"));
  if (!file) {
    const int error = errno;
    ::close(fd);
    throw IoError(detail::concat("cannot open ", path_, ": ", std::strerror(error)));
  }
  struct stat info {};
  if (fstat(fileno(file.get()), &info) != 0 || !S_ISREG(info.st_mode))
    throw IoError(detail::concat("cannot read ", path_, ": not a regular file"));
  const off_t size = info.st_size;
  bytes_.resize(static_cast<size_t>(size));
  if (size > 0 && std::fread(bytes_.data(), 1, bytes_.size(), file.get()) != bytes_.size())
    throw IoError(detail::concat("cannot read ", path_, ": ", std::strerror(errno)));
  if (bytes_.size() < 8) throw damaged("shorter than its 8-byte header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes_[static_cast<size_t>(i)];
  if (n > kMaxHeader || n > bytes_.size() - 8) throw damaged("its header length ", n, " exceeds the file");
  json::Value header;
  try {
    header = json::parse(std::string_view(reinterpret_cast<const char*>(bytes_.data()) + 8, n));
  } catch (const std::invalid_argument& e) {
    throw damaged("its header: ", e.what());
  }
  if (!header.is(json::Value::Kind::object)) throw damaged("its header is not a JSON object");
  const unsigned char* data = bytes_.data() + 8 + n;
  const uint64_t data_size = bytes_.size() - 8 - n;
  for (const auto& [name, entry] : header.members) {
    if (name == "__metadata__") {
      if (!entry.is(json::Value::Kind::object)) throw damaged("__metadata__ is not an object");
      for (const auto& [key, value] : entry.members) {
        if (!value.is(json::Value::Kind::string)) throw damaged("metadata ", key, " is not a string");
        metadata_[key] = value.string;
      }
      continue;
    }
    const json::Value* dtype = entry.find("dtype");
    const json::Value* shape = entry.find("shape");
    const json::Value* offsets = entry.find("data_offsets");
    if (!dtype || !dtype->is(json::Value::Kind::string) || !shape || !shape->is(json::Value::Kind::array) ||
        !offsets || !offsets->is(json::Value::Kind::array) || offsets->items.size() != 2)
      throw damaged("tensor ", name, " lacks dtype, shape or data_offsets");
    StoredTensor t{dtype->string, {}, nullptr, 1};
    const int64_t item = itemsize(t.dtype);
    if (item == 0) throw damaged("tensor ", name, " has an unknown dtype ", t.dtype);
    for (const json::Value& d : shape->items) {
      if (!d.is(json::Value::Kind::number) || !d.integral || d.integer < 0)
        throw damaged("tensor ", name, " has a bad shape");
      t.shape.push_back(d.integer);
      if (d.integer != 0 && t.elements > kMaxElements / d.integer) throw damaged("tensor ", name, " is too large");
      t.elements *= d.integer;
    }
    const json::Value &begin = offsets->items[0], &end = offsets->items[1];
    if (!begin.integral || !end.integral || begin.integer < 0 || end.integer < begin.integer ||
        static_cast<uint64_t>(end.integer) > data_size)
      throw damaged("tensor ", name, "'s data_offsets lie outside the file");
    if (end.integer - begin.integer != t.elements * item)
      throw damaged("tensor ", name, " holds ", end.integer - begin.integer, " bytes, its shape and dtype need ",
                    t.elements * item);
    t.data = data + begin.integer;
    tensors_.emplace(name, std::move(t));
  }
  const std::string* format = metadata("ember.format");
  if (format == nullptr || *format != kFormat)
    throw IoError(detail::concat(path_, " is not an Ember checkpoint (format '", format ? *format : "none",
                                 "', expected '", kFormat, "')"));
}

const std::string* Checkpoint::metadata(const std::string& key) const {
  const auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

}  // namespace ember::capi
