// ember._C.cross_entropy_fwd, cross_entropy_bwd and their references.
#include "bindings/common.h"
#include "ops/cross_entropy/cross_entropy.h"

namespace ember::bindings {
namespace {

// The problem of logits (B x V) with hard targets (int64, B) or soft ones (B x V), checked:
// every hard target is a class or ignore_index. target and weight are the views it reads.
template <class T>
cross_entropy::ProblemT<T> problem(const ArrayView& z, const py::handle& target_obj, const py::handle& weight_obj,
                                   double eps, int64_t ignore_index, ArrayView& target, ArrayView& weight) {
  const int64_t b = z.shape[0], v = z.shape[1];
  EMBER_CHECK_VALUE(v >= 1, "logits must have at least one class, got shape ", shape_str(z.shape));
  EMBER_CHECK_VALUE(eps >= 0.0 && eps <= 1.0, "label_smoothing must be in [0, 1], got ", eps);
  cross_entropy::ProblemT<T> p{b, v, z.ptr<const T>(), nullptr, nullptr, nullptr, static_cast<float>(eps),
                               ignore_index};
  target = read_array(target_obj, "target", "int64");
  if (target.ndim() == 2) {
    check(target, {dtype_of<T>(), {b, v}});
    p.soft = target.ptr<const T>();
  } else {
    check(target, {DType::int64, {b}});
    p.target = target.ptr<const int64_t>();
    for (int64_t r = 0; r < b; ++r) {
      const int64_t c = p.target[r];
      EMBER_CHECK_VALUE((c >= 0 && c < v) || c == ignore_index, "target[", r, "] = ", c,
                        " is neither a class in [0, ", v, ") nor ignore_index (", ignore_index, ")");
    }
  }
  if (!weight_obj.is_none()) {
    weight = array_arg(weight_obj, "weight", {dtype_of<T>(), {v}});
    p.weight = weight.ptr<const T>();
  }
  return p;
}

template <bool Ref, class T>
void fwd_t(const py::handle& z_obj, const py::handle& target_obj, const py::handle& weight_obj, double eps,
           int64_t ignore_index, const py::handle& lse_obj, const py::handle& nll_obj, const py::handle& smooth_obj) {
  const ArrayView z = array_arg(z_obj, "logits", {dtype_of<T>(), {-1, -1}});
  ArrayView target, weight;
  const auto p = problem<T>(z, target_obj, weight_obj, eps, ignore_index, target, weight);
  const ArrayView lse = array_arg(lse_obj, "out_lse", {DType::float64, {p.b}, Layout::contiguous, Access::write});
  const ArrayView nll = array_arg(nll_obj, "out_nll", {DType::float64, {p.b}, Layout::contiguous, Access::write});
  const ArrayView smooth =
      array_arg(smooth_obj, "out_smooth", {DType::float64, {p.b}, Layout::contiguous, Access::write});
  for (const ArrayView* o : {&lse, &nll, &smooth})
    for (const ArrayView* in : std::initializer_list<const ArrayView*>{&z, &target, &weight}) check_apart(*o, *in);
  check_disjoint({&lse, &nll, &smooth});
  const cross_entropy::RowLosses out{lse.ptr<double>(), nll.ptr<double>(), smooth.ptr<double>()};
  const Active active;
  py::gil_scoped_release release;
  if constexpr (Ref)
    cross_entropy::cross_entropy_fwd_ref(p, out);
  else
    cross_entropy::cross_entropy_fwd(p, out, active.isa, active.nthreads);
}

template <bool Ref>
void fwd(const py::handle& logits, const py::handle& target, const py::handle& weight, double label_smoothing,
         int64_t ignore_index, const py::handle& out_lse, const py::handle& out_nll, const py::handle& out_smooth) {
  if (runs_float64<Ref>(logits, "logits", "cross_entropy_fwd"))
    return fwd_t<true, double>(logits, target, weight, label_smoothing, ignore_index, out_lse, out_nll, out_smooth);
  fwd_t<Ref, float>(logits, target, weight, label_smoothing, ignore_index, out_lse, out_nll, out_smooth);
}

template <bool Ref, class T>
void bwd_t(const py::handle& z_obj, const py::handle& target_obj, const py::handle& weight_obj, double eps,
           int64_t ignore_index, const py::handle& lse_obj, const py::handle& scale_obj, const py::handle& dz_obj) {
  const ArrayView z = array_arg(z_obj, "logits", {dtype_of<T>(), {-1, -1}});
  ArrayView target, weight;
  const auto p = problem<T>(z, target_obj, weight_obj, eps, ignore_index, target, weight);
  const ArrayView lse = array_arg(lse_obj, "lse", {DType::float64, {p.b}});
  const ArrayView scale = array_arg(scale_obj, "scale", {dtype_of<T>(), {p.b}});
  const ArrayView dz = array_arg(dz_obj, "out", {dtype_of<T>(), {p.b, p.v}, Layout::contiguous, Access::write});
  // dz may be the logits themselves (in place), but no other input.
  check_in_place(dz, z);
  for (const ArrayView* in : std::initializer_list<const ArrayView*>{&target, &weight, &lse, &scale})
    check_apart(dz, *in);
  const Active active;
  py::gil_scoped_release release;
  if constexpr (Ref)
    cross_entropy::cross_entropy_bwd_ref(p, lse.ptr<const double>(), scale.ptr<const T>(), dz.ptr<T>());
  else
    cross_entropy::cross_entropy_bwd(p, lse.ptr<const double>(), scale.ptr<const T>(), dz.ptr<T>(), active.isa,
                                     active.nthreads);
}

template <bool Ref>
void bwd(const py::handle& logits, const py::handle& target, const py::handle& weight, double label_smoothing,
         int64_t ignore_index, const py::handle& lse, const py::handle& scale, const py::handle& out) {
  if (runs_float64<Ref>(logits, "logits", "cross_entropy_bwd"))
    return bwd_t<true, double>(logits, target, weight, label_smoothing, ignore_index, lse, scale, out);
  bwd_t<Ref, float>(logits, target, weight, label_smoothing, ignore_index, lse, scale, out);
}

}  // namespace

void bind_cross_entropy(py::module_& m) {
  def(m, "cross_entropy_fwd", &fwd<false>,
      "Per-row softmax cross-entropy of logits (B x V, float32, C-contiguous) against target: class indices\n"
      "(int64, B) or probabilities (B x V), with class weights (V, or None), label smoothing and ignore_index\n"
      "as PyTorch's. Writes out_lse (log-sum-exp), out_nll and out_smooth (float64, B each); the caller\n"
      "reduces. Reads each row once and writes nothing of size B x V.",
      py::arg("logits"), py::arg("target"), py::arg("weight"), py::arg("label_smoothing"), py::arg("ignore_index"),
      py::arg("out_lse"), py::arg("out_nll"), py::arg("out_smooth"));
  def(m, "cross_entropy_fwd_ref", &fwd<true>,
      "The reference cross_entropy_fwd (two passes in double); float32 or float64.", py::arg("logits"),
      py::arg("target"), py::arg("weight"), py::arg("label_smoothing"), py::arg("ignore_index"), py::arg("out_lse"),
      py::arg("out_nll"), py::arg("out_smooth"));
  def(m, "cross_entropy_bwd", &bwd<false>,
      "out = the logits' gradient for the per-row scales (scale, B; 0 for ignored rows) and the forward's lse;\n"
      "out may be logits itself.",
      py::arg("logits"), py::arg("target"), py::arg("weight"), py::arg("label_smoothing"), py::arg("ignore_index"),
      py::arg("lse"), py::arg("scale"), py::arg("out"));
  def(m, "cross_entropy_bwd_ref", &bwd<true>, "The reference cross_entropy_bwd; float32 or float64.",
      py::arg("logits"), py::arg("target"), py::arg("weight"), py::arg("label_smoothing"), py::arg("ignore_index"),
      py::arg("lse"), py::arg("scale"), py::arg("out"));
}

}  // namespace ember::bindings
