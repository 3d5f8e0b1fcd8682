// ember._cuda bindings: adam_step, sgd_step (multi-tensor, one launch per list).
#include <algorithm>
#include <vector>

#include "bindings/cuda_common.h"
#include "ops/optim_step/optim_step_cuda.h"

namespace ember::cuda_bind {
namespace {

using ember::detail::concat;

std::vector<py::handle> as_list(py::handle obj, const char* name) {
  EMBER_CHECK_TYPE(py::isinstance<py::list>(obj) || py::isinstance<py::tuple>(obj), name,
                   " must be a list of device arrays, got ", type_name(obj));
  std::vector<py::handle> out;
  for (py::handle h : obj) out.push_back(h);
  return out;
}

// A float32 C-contiguous device array of `n` elements (any shape; n < 0: any).
DevArray flat(py::handle obj, const std::string& name, int64_t n, bool writable) {
  DevArray a = device_array(obj, name.c_str());
  require_dtype(a, name.c_str(), {DType::f32});
  require_contiguous(a, name.c_str());
  EMBER_CHECK_VALUE(n < 0 || a.size() == n, name, " has ", a.size(), " elements, its parameter has ", n);
  if (writable) require_writable(a, name.c_str());
  return a;
}

// No two of the arrays may share memory (sorted by start address, neighbours compared).
void require_disjoint(const std::vector<std::pair<const DevArray*, std::string>>& arrays) {
  std::vector<std::tuple<uintptr_t, uintptr_t, const std::string*>> ext;
  for (const auto& [a, name] : arrays) {
    const auto [lo, hi] = a->extent();
    if (lo < hi) ext.emplace_back(lo, hi, &name);
  }
  std::sort(ext.begin(), ext.end());
  for (size_t i = 1; i < ext.size(); ++i)
    EMBER_CHECK_VALUE(std::get<0>(ext[i]) >= std::get<1>(ext[i - 1]), *std::get<2>(ext[i]), " and ",
                      *std::get<2>(ext[i - 1]), " share memory: parameters, gradients and optimizer state must ",
                      "all be separate arrays");
}

std::string item(const char* list, size_t i) { return concat(list, "[", i, "]"); }

void py_adam_step(py::handle params, py::handle grads, py::handle exp_avgs, py::handle exp_avg_sqs,
                  py::handle max_exp_avg_sqs, py::handle steps, double lr, double beta1, double beta2, double eps,
                  double weight_decay, bool decoupled, bool maximize, py::handle stream) {
  auto P = as_list(params, "params"), G = as_list(grads, "grads"), M = as_list(exp_avgs, "exp_avgs"),
       V = as_list(exp_avg_sqs, "exp_avg_sqs"), S = as_list(steps, "steps");
  const bool ams = !max_exp_avg_sqs.is_none();
  std::vector<py::handle> X;
  if (ams) X = as_list(max_exp_avg_sqs, "max_exp_avg_sqs");
  const size_t n = P.size();
  EMBER_CHECK_VALUE(G.size() == n && M.size() == n && V.size() == n && S.size() == n && (!ams || X.size() == n),
                    "params, grads, exp_avgs, exp_avg_sqs, steps", ams ? " and max_exp_avg_sqs" : "",
                    " must have one entry per parameter: got ", n, ", ", G.size(), ", ", M.size(), ", ", V.size(),
                    ", ", S.size(), ams ? concat(", ", X.size()) : std::string());
  std::vector<DevArray> keep;
  keep.reserve(5 * n);
  std::vector<std::string> names;
  names.reserve(5 * n);
  std::vector<ember::cuda::AdamTensor> t(n);
  for (size_t i = 0; i < n; ++i) {
    keep.push_back(flat(P[i], item("params", i), -1, true));
    const int64_t sz = keep.back().size();
    t[i].p = keep.back().data<float>();
    t[i].n = sz;
    keep.push_back(flat(G[i], item("grads", i), sz, false));
    t[i].g = keep.back().data<const float>();
    keep.push_back(flat(M[i], item("exp_avgs", i), sz, true));
    t[i].m = keep.back().data<float>();
    keep.push_back(flat(V[i], item("exp_avg_sqs", i), sz, true));
    t[i].v = keep.back().data<float>();
    t[i].vmax = nullptr;
    if (ams) {
      keep.push_back(flat(X[i], item("max_exp_avg_sqs", i), sz, true));
      t[i].vmax = keep.back().data<float>();
    }
    t[i].step = S[i].cast<int64_t>();
    EMBER_CHECK_VALUE(t[i].step >= 1, "steps[", i, "] must be >= 1, got ", t[i].step);
  }
  {
    static const char* kinds[] = {"params", "grads", "exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs"};
    const size_t per = ams ? 5 : 4;
    std::vector<std::pair<const DevArray*, std::string>> all;
    for (size_t k = 0; k < keep.size(); ++k) all.emplace_back(&keep[k], item(kinds[k % per], k / per));
    require_disjoint(all);
  }
  const ember::cuda::AdamHyper h{static_cast<float>(lr), static_cast<float>(beta1), static_cast<float>(beta2),
                                 static_cast<float>(eps), static_cast<float>(weight_decay), decoupled, maximize, ams};
  const auto s = stream_arg(stream);
  py::gil_scoped_release release;
  ember::cuda::adam_step(t.data(), static_cast<int>(n), h, s);
}

void py_sgd_step(py::handle params, py::handle grads, py::handle bufs, double lr, double momentum, double dampening,
                 double weight_decay, bool nesterov, bool maximize, bool first, py::handle stream) {
  auto P = as_list(params, "params"), G = as_list(grads, "grads");
  const bool mom = !bufs.is_none();
  std::vector<py::handle> B;
  if (mom) B = as_list(bufs, "momentum_buffers");
  const size_t n = P.size();
  EMBER_CHECK_VALUE(G.size() == n && (!mom || B.size() == n), "params, grads", mom ? " and momentum_buffers" : "",
                    " must have one entry per parameter: got ", n, ", ", G.size(),
                    mom ? concat(", ", B.size()) : std::string());
  std::vector<DevArray> keep;
  keep.reserve(3 * n);
  std::vector<ember::cuda::SgdTensor> t(n);
  for (size_t i = 0; i < n; ++i) {
    keep.push_back(flat(P[i], item("params", i), -1, true));
    const int64_t sz = keep.back().size();
    t[i].p = keep.back().data<float>();
    t[i].n = sz;
    keep.push_back(flat(G[i], item("grads", i), sz, false));
    t[i].g = keep.back().data<const float>();
    t[i].buf = nullptr;
    if (mom) {
      keep.push_back(flat(B[i], item("momentum_buffers", i), sz, true));
      t[i].buf = keep.back().data<float>();
    }
  }
  {
    static const char* kinds[] = {"params", "grads", "momentum_buffers"};
    const size_t per = mom ? 3 : 2;
    std::vector<std::pair<const DevArray*, std::string>> all;
    for (size_t k = 0; k < keep.size(); ++k) all.emplace_back(&keep[k], item(kinds[k % per], k / per));
    require_disjoint(all);
  }
  const ember::cuda::SgdHyper h{static_cast<float>(lr), static_cast<float>(momentum), static_cast<float>(dampening),
                                static_cast<float>(weight_decay), nesterov, maximize, first, mom};
  const auto s = stream_arg(stream);
  py::gil_scoped_release release;
  ember::cuda::sgd_step(t.data(), static_cast<int>(n), h, s);
}

}  // namespace

void register_optim(py::module_& m) {
  m.def("adam_step", &py_adam_step,
        "One Adam/AdamW (decoupled=True)/AMSGrad (max_exp_avg_sqs given) step over whole lists of float32\n"
        "C-contiguous device arrays, in place: params, grads, exp_avgs, exp_avg_sqs (and max_exp_avg_sqs), one\n"
        "entry per parameter, and steps (one int >= 1 per parameter, the step count after this update).\n"
        "PyTorch's formulas (see ember._C.adam_step); one kernel launch per 48 parameters. Asynchronous.",
        py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_avg_sqs"), py::arg("max_exp_avg_sqs"),
        py::arg("steps"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"),
        py::arg("decoupled"), py::arg("maximize"), py::arg("stream") = 0);
  m.def("sgd_step", &py_sgd_step,
        "One SGD step (momentum, dampening, Nesterov, weight decay, maximize; `first` for the step that\n"
        "initialises the momentum buffers) over lists of float32 C-contiguous device arrays, in place.\n"
        "momentum_buffers is None without momentum. One kernel launch per 96 parameters. Asynchronous.",
        py::arg("params"), py::arg("grads"), py::arg("momentum_buffers"), py::arg("lr"), py::arg("momentum"),
        py::arg("dampening"), py::arg("weight_decay"), py::arg("nesterov"), py::arg("maximize"), py::arg("first"),
        py::arg("stream") = 0);
}

}  // namespace ember::cuda_bind
