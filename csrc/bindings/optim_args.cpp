// The optimizer steps' list arguments (see optim_args.h).
#include "bindings/optim_args.h"

#include "core/check.h"

namespace ember::bindings {

std::vector<ArrayView> tensor_list(const py::handle& obj, const char* name, Access access, Device device,
                                   ArrayReader read, std::deque<std::string>& names,
                                   const std::vector<ArrayView>* params) {
  EMBER_CHECK_TYPE(py::isinstance<py::list>(obj) || py::isinstance<py::tuple>(obj), name, " must be a list of ",
                   device == Device::cpu ? "numpy.ndarray" : "device arrays", " of float32, got ", type_name(obj));
  const auto seq = py::reinterpret_borrow<py::sequence>(obj);
  if (params)
    EMBER_CHECK_VALUE(seq.size() == params->size(), name, " has ", seq.size(), " arrays but params has ",
                      params->size());
  std::vector<ArrayView> out;
  for (size_t i = 0; i < seq.size(); ++i) {
    names.push_back(std::string(name) + "[" + std::to_string(i) + "]");
    out.push_back(read(seq[i], names.back().c_str(), {DType::float32, Shape::any(), Layout::contiguous, access, device}));
    if (params)
      EMBER_CHECK_VALUE(out[i].size() == (*params)[i].size(), out[i].name, " has ", out[i].size(), " elements, ",
                        (*params)[i].name, " has ", (*params)[i].size());
  }
  return out;
}

std::vector<int64_t> step_counts(const py::handle& obj, size_t count) {
  EMBER_CHECK_TYPE(py::isinstance<py::list>(obj) || py::isinstance<py::tuple>(obj),
                   "steps must be a list of ints, got ", type_name(obj));
  const auto seq = py::reinterpret_borrow<py::sequence>(obj);
  EMBER_CHECK_VALUE(seq.size() == count, "steps has ", seq.size(), " counts but params has ", count, " arrays");
  std::vector<int64_t> steps;
  for (size_t i = 0; i < count; ++i) {
    const py::object item = seq[i];
    EMBER_CHECK_TYPE(PyLong_Check(item.ptr()), "steps[", i, "] must be an int, got ", type_name(item));
    int overflow = 0;
    const long long t = PyLong_AsLongLongAndOverflow(item.ptr(), &overflow);
    EMBER_CHECK_VALUE(overflow == 0 && t >= 1, "steps[", i, "] must be >= 1, got ", std::string(py::str(item)));
    steps.push_back(t);
  }
  return steps;
}

void check_lists_disjoint(std::initializer_list<const std::vector<ArrayView>*> lists) {
  std::vector<const ArrayView*> all;
  for (const auto* list : lists)
    for (const ArrayView& v : *list) all.push_back(&v);
  check_disjoint(all);
}

AdamLists adam_lists(const py::handle& params, const py::handle& grads, const py::handle& exp_avgs,
                     const py::handle& exp_avg_sqs, const py::handle& max_exp_avg_sqs, const py::handle& steps,
                     Device device, ArrayReader read) {
  AdamLists l;  // returned by move: the deque keeps the names' addresses
  l.p = tensor_list(params, "params", Access::write, device, read, l.names);
  l.g = tensor_list(grads, "grads", Access::read, device, read, l.names, &l.p);
  l.m = tensor_list(exp_avgs, "exp_avgs", Access::write, device, read, l.names, &l.p);
  l.v = tensor_list(exp_avg_sqs, "exp_avg_sqs", Access::write, device, read, l.names, &l.p);
  if (!max_exp_avg_sqs.is_none())
    l.vmax = tensor_list(max_exp_avg_sqs, "max_exp_avg_sqs", Access::write, device, read, l.names, &l.p);
  l.step = step_counts(steps, l.p.size());
  check_lists_disjoint({&l.p, &l.g, &l.m, &l.v, &l.vmax});
  return l;
}

SgdLists sgd_lists(const py::handle& params, const py::handle& grads, const py::handle& momentum_buffers,
                   double momentum, Device device, ArrayReader read) {
  EMBER_CHECK_VALUE(momentum == 0.0 || !momentum_buffers.is_none(), "momentum_buffers must be given when momentum (",
                    momentum, ") is not 0");
  SgdLists l;
  l.p = tensor_list(params, "params", Access::write, device, read, l.names);
  l.g = tensor_list(grads, "grads", Access::read, device, read, l.names, &l.p);
  if (!momentum_buffers.is_none())
    l.buf = tensor_list(momentum_buffers, "momentum_buffers", Access::write, device, read, l.names, &l.p);
  check_lists_disjoint({&l.p, &l.g, &l.buf});
  return l;
}

}  // namespace ember::bindings
