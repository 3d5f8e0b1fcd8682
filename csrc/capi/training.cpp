// The C API's training kernels: softmax cross-entropy (with its reductions, as Ember's Python
// layer does them) and the Adam / SGD steps, every argument checked before memory is touched.
#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>
#include <vector>

#include "capi/common.h"
#include "ops/cross_entropy/cross_entropy.h"
#include "ops/optim_step/optim_step.h"

using namespace ember::capi;
namespace xent = ember::cross_entropy;
namespace optim = ember::optim_step;

namespace {

constexpr int64_t F = sizeof(float);

// The problem `a` describes over `logits`, checked: sizes, pointers, every class index.
xent::Problem problem(const ember_cross_entropy_args* a, const float* logits) {
  if (a == nullptr) invalid("args is NULL");
  check_count("batch", a->batch);
  if (a->classes < 1) invalid("classes must be >= 1, got ", a->classes);
  const int64_t n = product("the logits", {a->batch, a->classes});
  if ((a->target == nullptr) == (a->target_probs == nullptr) && a->batch > 0)
    invalid("exactly one of target and target_probs must be given");
  if (!(a->label_smoothing >= 0.0f && a->label_smoothing <= 1.0f))
    invalid("label_smoothing must be in [0, 1], got ", a->label_smoothing);
  if (a->reduction != EMBER_REDUCTION_NONE && a->reduction != EMBER_REDUCTION_MEAN &&
      a->reduction != EMBER_REDUCTION_SUM)
    invalid("reduction must be EMBER_REDUCTION_NONE, MEAN or SUM, got ", a->reduction);
  check_pointer("logits", logits, n, F);
  check_pointer("target", a->target, 0, 8);
  check_pointer("target_probs", a->target_probs, 0, F);
  check_pointer("weight", a->weight, 0, F);
  if (a->target != nullptr)
    for (int64_t r = 0; r < a->batch; ++r) {
      const int64_t c = a->target[r];
      if (!((c >= 0 && c < a->classes) || c == a->ignore_index))
        invalid("target[", r, "] = ", c, " is neither a class in [0, ", a->classes, ") nor ignore_index (",
                a->ignore_index, ")");
    }
  return {a->batch, a->classes, logits, a->target, a->target_probs, a->weight, a->label_smoothing, a->ignore_index};
}

bool ignored(const xent::Problem& p, int64_t r) { return p.target != nullptr && p.target[r] == p.ignore_index; }

// What the mean divides by: the batch for probabilities, else the valid targets' total weight.
double denominator(const xent::Problem& p) {
  if (p.target == nullptr) return static_cast<double>(p.b);
  double total = 0.0;
  for (int64_t r = 0; r < p.b; ++r)
    if (!ignored(p, r)) total += p.weight ? static_cast<double>(p.weight[p.target[r]]) : 1.0;
  return total;
}

// Each row's log-sum-exp and loss (double), the kernel's sums combined as the Python layer does.
void row_losses(const xent::Problem& p, std::vector<double>& lse, std::vector<double>& rows) {
  std::vector<double> smooth(static_cast<size_t>(p.b));
  lse.resize(static_cast<size_t>(p.b)), rows.resize(static_cast<size_t>(p.b));
  xent::cross_entropy_fwd(p, {lse.data(), rows.data(), smooth.data()}, active_isa(), threads());
  if (p.target == nullptr) return;  // probabilities: the kernel's nll is the row's loss
  const double eps = p.eps, share = eps / static_cast<double>(p.v);
  for (int64_t r = 0; r < p.b; ++r) rows[r] = (1.0 - eps) * rows[r] + share * smooth[r];
}

// Every array of every tensor, as (name, address, bytes), must be distinct memory.
using Span = std::tuple<const void*, int64_t, std::string>;

void check_disjoint(std::vector<Span>& spans) {
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return std::less<const void*>()(std::get<0>(a), std::get<0>(b));
  });
  for (size_t i = 1; i < spans.size(); ++i) {
    const auto& [p0, n0, name0] = spans[i - 1];
    const auto& [p1, n1, name1] = spans[i];
    if (reinterpret_cast<std::uintptr_t>(p0) + static_cast<std::uintptr_t>(n0) > reinterpret_cast<std::uintptr_t>(p1))
      invalid(name0, " and ", name1, " share memory");
  }
}

// Checks one array of tensor i and records it for the overlap check.
void array(std::vector<Span>& spans, int64_t i, const char* field, const void* p, int64_t n) {
  const std::string name = ember::detail::concat("tensors[", i, "].", field);
  check_pointer(name.c_str(), p, n, F);
  if (p != nullptr && n > 0) spans.emplace_back(p, n * F, name);
}

}  // namespace

extern "C" {

ember_status ember_cross_entropy_forward_f32(const ember_cross_entropy_args* args, const float* logits, float* loss,
                                             double* lse) {
  return guarded("ember_cross_entropy_forward_f32", [&] {
    const xent::Problem p = problem(args, logits);
    const int64_t outputs = args->reduction == EMBER_REDUCTION_NONE ? p.b : 1;
    check_pointer("loss", loss, outputs, F);
    check_pointer("lse", lse, 0, 8);
    const int64_t n = p.b * p.v;
    for (auto [name, ptr, bytes] : {std::tuple{"loss", static_cast<const void*>(loss), outputs * F},
                                    {"lse", static_cast<const void*>(lse), lse ? p.b * 8 : 0}}) {
      check_apart(name, ptr, bytes, "logits", logits, n * F);
      check_apart(name, ptr, bytes, "target", p.target, p.target ? p.b * 8 : 0);
      check_apart(name, ptr, bytes, "target_probs", p.soft, p.soft ? n * F : 0);
      check_apart(name, ptr, bytes, "weight", p.weight, p.weight ? p.v * F : 0);
    }
    check_apart("loss", loss, outputs * F, "lse", lse, lse ? p.b * 8 : 0);
    std::vector<double> lses, rows;
    row_losses(p, lses, rows);
    if (lse != nullptr) std::copy(lses.begin(), lses.end(), lse);
    if (args->reduction == EMBER_REDUCTION_NONE) {
      for (int64_t r = 0; r < p.b; ++r) loss[r] = static_cast<float>(rows[r]);
      return;
    }
    double total = 0.0;
    for (double r : rows) total += r;
    if (args->reduction == EMBER_REDUCTION_MEAN) total /= denominator(p);  // 0 / 0 is NaN, as PyTorch
    *loss = static_cast<float>(total);
  });
}

ember_status ember_cross_entropy_backward_f32(const ember_cross_entropy_args* args, const float* logits,
                                              const double* lse, const float* grad_loss, float* dlogits) {
  return guarded("ember_cross_entropy_backward_f32", [&] {
    const xent::Problem p = problem(args, logits);
    const int64_t n = p.b * p.v, grads = args->reduction == EMBER_REDUCTION_NONE ? p.b : 1;
    check_pointer("lse", lse, 0, 8);
    check_pointer("grad_loss", grad_loss, 0, F);
    check_pointer("dlogits", dlogits, n, F);
    if (dlogits != logits) check_apart("dlogits", dlogits, n * F, "logits", logits, n * F);
    check_apart("dlogits", dlogits, n * F, "target", p.target, p.target ? p.b * 8 : 0);
    check_apart("dlogits", dlogits, n * F, "target_probs", p.soft, p.soft ? n * F : 0);
    check_apart("dlogits", dlogits, n * F, "weight", p.weight, p.weight ? p.v * F : 0);
    check_apart("dlogits", dlogits, n * F, "lse", lse, lse ? p.b * 8 : 0);
    check_apart("dlogits", dlogits, n * F, "grad_loss", grad_loss, grad_loss ? grads * F : 0);
    if (n == 0) return;
    std::vector<double> own;
    if (lse == nullptr) {
      std::vector<double> rows;
      row_losses(p, own, rows);
      lse = own.data();
    }
    // Each row's factor: the loss's gradient, over the mean's denominator (none when it is 0:
    // every target ignored), zero on ignored rows.
    const double mean = args->reduction == EMBER_REDUCTION_MEAN ? denominator(p) : 1.0;
    std::vector<float> scale(static_cast<size_t>(p.b));
    for (int64_t r = 0; r < p.b; ++r) {
      const double g = grad_loss == nullptr ? 1.0 : static_cast<double>(grad_loss[grads == 1 ? 0 : r]);
      const double s = mean != 0.0 ? g / mean : 0.0;
      scale[r] = ignored(p, r) ? 0.0f : static_cast<float>(s);
    }
    xent::cross_entropy_bwd(p, lse, scale.data(), dlogits, active_isa(), threads());
  });
}

ember_status ember_adam_step_f32(const ember_adam_hyper* h, const ember_adam_tensor* tensors, int64_t count) {
  return guarded("ember_adam_step_f32", [&] {
    if (h == nullptr) invalid("hyper is NULL");
    optim::check_adam_hyper(h->lr, h->beta1, h->beta2, h->eps, h->weight_decay);
    check_count("count", count);
    check_pointer("tensors", tensors, count, alignof(ember_adam_tensor));
    std::vector<optim::AdamTensor> list;
    std::vector<Span> spans;
    const bool amsgrad = count > 0 && tensors[0].max_exp_avg_sq != nullptr;
    for (int64_t i = 0; i < count; ++i) {
      const ember_adam_tensor& t = tensors[i];
      check_count(ember::detail::concat("tensors[", i, "].n").c_str(), t.n);
      product("a tensor", {t.n});
      if (t.step < 1) invalid("tensors[", i, "].step must be >= 1, got ", t.step);
      if ((t.max_exp_avg_sq != nullptr) != amsgrad)
        invalid("tensors[", i, "].max_exp_avg_sq must be ", amsgrad ? "given (tensors[0] has one: AMSGrad)" :
                "NULL (tensors[0] has none)");
      array(spans, i, "param", t.param, t.n), array(spans, i, "grad", t.grad, t.n);
      array(spans, i, "exp_avg", t.exp_avg, t.n), array(spans, i, "exp_avg_sq", t.exp_avg_sq, t.n);
      if (amsgrad) array(spans, i, "max_exp_avg_sq", t.max_exp_avg_sq, t.n);
      list.push_back({t.n, t.param, t.grad, t.exp_avg, t.exp_avg_sq, t.max_exp_avg_sq, t.step});
    }
    check_disjoint(spans);
    const optim::AdamHyper hyper{h->lr, h->beta1, h->beta2, h->eps, h->weight_decay, h->decoupled != 0,
                                 h->maximize != 0};
    optim::adam_step(hyper, list.data(), count, active_isa(), threads());
  });
}

ember_status ember_sgd_step_f32(const ember_sgd_hyper* h, const ember_sgd_tensor* tensors, int64_t count) {
  return guarded("ember_sgd_step_f32", [&] {
    if (h == nullptr) invalid("hyper is NULL");
    optim::check_sgd_hyper(h->lr, h->momentum, h->dampening, h->weight_decay, h->nesterov != 0);
    check_count("count", count);
    check_pointer("tensors", tensors, count, alignof(ember_sgd_tensor));
    const bool momentum = h->momentum > 0.0f;
    std::vector<optim::SgdTensor> list;
    std::vector<Span> spans;
    for (int64_t i = 0; i < count; ++i) {
      const ember_sgd_tensor& t = tensors[i];
      check_count(ember::detail::concat("tensors[", i, "].n").c_str(), t.n);
      product("a tensor", {t.n});
      if ((t.momentum_buffer != nullptr) != momentum)
        invalid("tensors[", i, "].momentum_buffer must be ", momentum ? "given (momentum > 0)" : "NULL (momentum 0)");
      array(spans, i, "param", t.param, t.n), array(spans, i, "grad", t.grad, t.n);
      if (momentum) array(spans, i, "momentum_buffer", t.momentum_buffer, t.n);
      list.push_back({t.n, t.param, t.grad, t.momentum_buffer});
    }
    check_disjoint(spans);
    const optim::SgdHyper hyper{h->lr,          h->momentum,       h->dampening, h->weight_decay,
                                h->nesterov != 0, h->maximize != 0, h->first != 0};
    optim::sgd_step(hyper, list.data(), count, active_isa(), threads());
  });
}

}  // extern "C"
