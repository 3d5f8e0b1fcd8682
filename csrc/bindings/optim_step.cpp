// ember._C.adam_step, sgd_step and their references: one call per parameter
// group, every argument array a list with one entry per parameter.
#include <vector>

#include "bindings/common.h"
#include "bindings/optim_args.h"
#include "ops/optim_step/optim_step.h"

namespace ember::bindings {
namespace {

template <bool Ref>
void adam_step(const py::handle& params, const py::handle& grads, const py::handle& exp_avgs,
               const py::handle& exp_avg_sqs, const py::handle& max_exp_avg_sqs, const py::handle& steps,
               double lr, double beta1, double beta2, double eps, double weight_decay, bool decoupled,
               bool maximize) {
  optim_step::check_adam_hyper(lr, beta1, beta2, eps, weight_decay);
  const AdamLists l = adam_lists(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, Device::cpu, &array_arg);
  std::vector<optim_step::AdamTensor> list;
  for (size_t i = 0; i < l.p.size(); ++i)
    list.push_back({l.p[i].size(), l.p[i].ptr<float>(), l.g[i].ptr<const float>(), l.m[i].ptr<float>(),
                    l.v[i].ptr<float>(), l.vmax.empty() ? nullptr : l.vmax[i].ptr<float>(), l.step[i]});
  const optim_step::AdamHyper h{static_cast<float>(lr),  static_cast<float>(beta1),        static_cast<float>(beta2),
                                static_cast<float>(eps), static_cast<float>(weight_decay), decoupled,
                                maximize};
  const Active active;
  py::gil_scoped_release release;
  if constexpr (Ref)
    optim_step::adam_step_ref(h, list.data(), static_cast<int64_t>(list.size()));
  else
    optim_step::adam_step(h, list.data(), static_cast<int64_t>(list.size()), active.isa, active.nthreads);
}

template <bool Ref>
void sgd_step(const py::handle& params, const py::handle& grads, const py::handle& momentum_buffers, double lr,
              double momentum, double dampening, double weight_decay, bool nesterov, bool maximize, bool first) {
  optim_step::check_sgd_hyper(lr, momentum, dampening, weight_decay, nesterov);
  const SgdLists l = sgd_lists(params, grads, momentum_buffers, momentum, Device::cpu, &array_arg);
  std::vector<optim_step::SgdTensor> list;
  for (size_t i = 0; i < l.p.size(); ++i)
    list.push_back({l.p[i].size(), l.p[i].ptr<float>(), l.g[i].ptr<const float>(),
                    l.buf.empty() ? nullptr : l.buf[i].ptr<float>()});
  const optim_step::SgdHyper h{static_cast<float>(lr),           static_cast<float>(momentum),
                               static_cast<float>(dampening),    static_cast<float>(weight_decay),
                               nesterov,                          maximize,
                               first};
  const Active active;
  py::gil_scoped_release release;
  if constexpr (Ref)
    optim_step::sgd_step_ref(h, list.data(), static_cast<int64_t>(list.size()));
  else
    optim_step::sgd_step(h, list.data(), static_cast<int64_t>(list.size()), active.isa, active.nthreads);
}

}  // namespace

void bind_optim_step(py::module_& m) {
  def(m, "adam_step", &adam_step<false>,
      "One Adam / AdamW step (decoupled: AdamW's weight decay) of a parameter group, PyTorch's formulas:\n"
      "params, grads, exp_avgs, exp_avg_sqs and max_exp_avg_sqs (AMSGrad, or None) are lists of float32\n"
      "C-contiguous arrays, one per parameter, updated in place; steps holds each parameter's step (>= 1).\n"
      "One pass over every array, the threads spread over all the parameters' elements.",
      py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_avg_sqs"), py::arg("max_exp_avg_sqs"),
      py::arg("steps"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"),
      py::arg("decoupled"), py::arg("maximize"));
  def(m, "adam_step_ref", &adam_step<true>, "The reference adam_step (plain loops in double); its arguments.",
      py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_avg_sqs"), py::arg("max_exp_avg_sqs"),
      py::arg("steps"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"),
      py::arg("decoupled"), py::arg("maximize"));
  def(m, "sgd_step", &sgd_step<false>,
      "One SGD step (momentum, dampening, Nesterov, weight decay) of a parameter group, PyTorch's formulas:\n"
      "params, grads and momentum_buffers (or None without momentum) are lists of float32 C-contiguous\n"
      "arrays, one per parameter; first: the buffers are started from this step's direction.",
      py::arg("params"), py::arg("grads"), py::arg("momentum_buffers"), py::arg("lr"), py::arg("momentum"),
      py::arg("dampening"), py::arg("weight_decay"), py::arg("nesterov"), py::arg("maximize"), py::arg("first"));
  def(m, "sgd_step_ref", &sgd_step<true>, "The reference sgd_step (plain loops in double); its arguments.",
      py::arg("params"), py::arg("grads"), py::arg("momentum_buffers"), py::arg("lr"), py::arg("momentum"),
      py::arg("dampening"), py::arg("weight_decay"), py::arg("nesterov"), py::arg("maximize"), py::arg("first"));
}

}  // namespace ember::bindings
