// The list arguments of the optimizer steps, shared by ember._C and ember._cuda: one array per
// parameter in each list, step counts, and no two arrays sharing memory.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <deque>
#include <initializer_list>
#include <string>
#include <vector>

#include "bindings/array_view.h"

namespace ember::bindings {

// How a module reads one array argument: array_arg (host) or the CUDA module's device_arg.
using ArrayReader = ArrayView (*)(py::handle obj, const char* name, const Spec& spec);

// The list argument `name`: float32 C-contiguous arrays on `device`, read by `read`, writable
// when `access` says so; with `params`, one per parameter and each with as many elements as its
// parameter. `names` keeps their names ("grads[3]") alive for the messages.
std::vector<ArrayView> tensor_list(const py::handle& obj, const char* name, Access access, Device device,
                                   ArrayReader read, std::deque<std::string>& names,
                                   const std::vector<ArrayView>* params = nullptr);

// The step counts, one int >= 1 per parameter.
std::vector<int64_t> step_counts(const py::handle& obj, size_t count);


// No array of any of the lists shares memory with another.
void check_lists_disjoint(std::initializer_list<const std::vector<ArrayView>*> lists);

// Every list argument of an Adam step, read and checked (one entry per parameter, apart from
// one another): `vmax` is empty without AMSGrad. `names` holds the entries' names.
struct AdamLists {
  std::deque<std::string> names;
  std::vector<ArrayView> p, g, m, v, vmax;
  std::vector<int64_t> step;
};
AdamLists adam_lists(const py::handle& params, const py::handle& grads, const py::handle& exp_avgs,
                     const py::handle& exp_avg_sqs, const py::handle& max_exp_avg_sqs, const py::handle& steps,
                     Device device, ArrayReader read);

// The same for SGD: `buf` is empty without momentum buffers, which momentum > 0 needs.
struct SgdLists {
  std::deque<std::string> names;
  std::vector<ArrayView> p, g, buf;
};
SgdLists sgd_lists(const py::handle& params, const py::handle& grads, const py::handle& momentum_buffers,
                   double momentum, Device device, ArrayReader read);

}  // namespace ember::bindings
