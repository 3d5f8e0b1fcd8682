#include "core/registry.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <tuple>

#include "core/check.h"

namespace ember {

namespace {

// Built on first use, so a registrar may run before or after any other static
// initialiser. Written only while the module loads; read-only afterwards.
std::vector<KernelEntry>& table() {
  static std::vector<KernelEntry> rows;
  return rows;
}

std::atomic<int> g_active{-1};
std::atomic<bool> g_allow_vnni{true}, g_allow_vbmi{true};

bool feature_present(Feature f) {
  const bool vnni = cpu_features().avx512_vnni && g_allow_vnni.load(std::memory_order_relaxed);
  switch (f) {
    case Feature::avx512_vnni:
      return vnni;
    case Feature::avx512_vnni_vbmi:
      return vnni && cpu_features().avx512_vbmi && g_allow_vbmi.load(std::memory_order_relaxed);
    case Feature::none:
      break;
  }
  return true;
}

const char* feature_suffix(Feature f) {
  switch (f) {
    case Feature::avx512_vnni:
      return "+vnni";
    case Feature::avx512_vnni_vbmi:
      return "+vnni+vbmi";
    case Feature::none:
      break;
  }
  return "";
}

}  // namespace

void register_kernels(const KernelEntry* rows, size_t count) {
  std::vector<KernelEntry>& t = table();
  for (size_t i = 0; i < count; ++i) {
    const KernelEntry& r = rows[i];
    for (const KernelEntry& e : t)
      EMBER_ASSERT(!(std::strcmp(e.op, r.op) == 0 && e.device == r.device && e.isa == r.isa &&
                     e.feature == r.feature),
                   "kernel '", r.op, "' registered twice for ISA ", isa_name(r.isa));
    t.push_back(r);
  }
}

bool allow_cpu_feature(const std::string& name, bool allowed) {
  std::atomic<bool>* flag = name == "avx512_vnni" ? &g_allow_vnni : name == "avx512_vbmi" ? &g_allow_vbmi : nullptr;
  if (flag == nullptr)
    throw std::invalid_argument(
        detail::concat("unknown CPU feature '", name, "' (expected 'avx512_vnni' or 'avx512_vbmi')"));
  return flag->exchange(allowed);
}

void init_isa_from_env() {
  const char* env = std::getenv("EMBER_ISA");
  if (env == nullptr || *env == '\0') {
    g_active.store(static_cast<int>(best_isa()));
    return;
  }
  Isa isa;
  try {
    isa = parse_isa(env);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(detail::concat("EMBER_ISA: ", e.what()));
  }
  set_active_isa(isa);
}

Isa active_isa() {
  int v = g_active.load(std::memory_order_relaxed);
  if (v < 0) return best_isa();
  return static_cast<Isa>(v);
}

void set_active_isa(Isa isa) {
  if (!isa_supported(isa)) {
    std::string avail;
    for (Isa s : supported_isas()) avail += std::string(avail.empty() ? "" : ", ") + isa_name(s);
    throw std::invalid_argument(detail::concat("ISA '", isa_name(isa),
                                               "' is not supported by this CPU (available: ", avail, ")"));
  }
  g_active.store(static_cast<int>(isa));
}

const void* lookup_impl(const char* op, Device device, Isa isa) {
  const KernelEntry* best = nullptr;
  for (const KernelEntry& e : table()) {
    if (e.device != device || std::strcmp(e.op, op) != 0 || e.isa > isa || !feature_present(e.feature)) continue;
    if (best == nullptr || std::tie(e.isa, e.feature) > std::tie(best->isa, best->feature)) best = &e;
  }
  EMBER_ASSERT(best != nullptr, "no kernel registered for op '", op, "'");
  return best->impl;
}

std::vector<std::pair<std::string, std::string>> registered_kernels() {
  std::vector<const KernelEntry*> rows;
  for (const KernelEntry& e : table())
    if (e.device == Device::cpu) rows.push_back(&e);
  std::sort(rows.begin(), rows.end(), [](const KernelEntry* a, const KernelEntry* b) {
    const int c = std::strcmp(a->op, b->op);
    return c != 0 ? c < 0 : std::tie(a->isa, a->feature) < std::tie(b->isa, b->feature);
  });
  std::vector<std::pair<std::string, std::string>> out;
  for (const KernelEntry* e : rows)
    out.emplace_back(e->op, std::string(isa_name(e->isa)) + feature_suffix(e->feature));
  return out;
}

}  // namespace ember
