// ember._cuda bindings: adam_step, sgd_step (multi-tensor, one launch per list).
#include <vector>

#include "bindings/cuda_common.h"
#include "bindings/optim_args.h"
#include "ops/optim_step/optim_step.h"
#include "ops/optim_step/optim_step_cuda.h"

namespace ember::cuda_bind {
namespace {

using optim_step::check_adam_hyper;
using optim_step::check_sgd_hyper;

void py_adam_step(py::handle params, py::handle grads, py::handle exp_avgs, py::handle exp_avg_sqs,
                  py::handle max_exp_avg_sqs, py::handle steps, double lr, double beta1, double beta2, double eps,
                  double weight_decay, bool decoupled, bool maximize, py::handle stream) {
  check_adam_hyper(lr, beta1, beta2, eps, weight_decay);
  const auto l = bindings::adam_lists(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, Device::cuda,
                                      &device_arg);
  const bool ams = !l.vmax.empty();
  std::vector<ember::cuda::AdamTensor> t(l.p.size());
  for (size_t i = 0; i < l.p.size(); ++i)
    t[i] = {l.p[i].ptr<float>(), l.g[i].ptr<const float>(), l.m[i].ptr<float>(), l.v[i].ptr<float>(),
            ams ? l.vmax[i].ptr<float>() : nullptr, l.p[i].size(), l.step[i]};
  const ember::cuda::AdamHyper h{static_cast<float>(lr), static_cast<float>(beta1), static_cast<float>(beta2),
                                 static_cast<float>(eps), static_cast<float>(weight_decay), decoupled, maximize, ams};
  const auto s = stream_arg(stream);
  py::gil_scoped_release release;
  ember::cuda::adam_step(t.data(), static_cast<int>(t.size()), h, s);
}

void py_sgd_step(py::handle params, py::handle grads, py::handle bufs, double lr, double momentum, double dampening,
                 double weight_decay, bool nesterov, bool maximize, bool first, py::handle stream) {
  check_sgd_hyper(lr, momentum, dampening, weight_decay, nesterov);
  const auto l = bindings::sgd_lists(params, grads, bufs, momentum, Device::cuda, &device_arg);
  const bool mom = !l.buf.empty();
  std::vector<ember::cuda::SgdTensor> t(l.p.size());
  for (size_t i = 0; i < l.p.size(); ++i)
    t[i] = {l.p[i].ptr<float>(), l.g[i].ptr<const float>(), mom ? l.buf[i].ptr<float>() : nullptr, l.p[i].size()};
  const ember::cuda::SgdHyper h{static_cast<float>(lr), static_cast<float>(momentum), static_cast<float>(dampening),
                                static_cast<float>(weight_decay), nesterov, maximize, first, mom};
  const auto s = stream_arg(stream);
  py::gil_scoped_release release;
  ember::cuda::sgd_step(t.data(), static_cast<int>(t.size()), h, s);
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
