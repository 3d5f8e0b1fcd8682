"""The Python API over the kernels (ember.ops, ember.quant), fuzzed with the same property as
the bindings: the fast function against its *_ref twin (or NumPy), named errors, no crash, no
write outside `out`, inputs unchanged."""

from hypothesis import given

import fuzz_strategies as fs
from fuzz_settings import examples


@examples(60)
@given(fs.gemm_cases(api=True))
def test_ops_gemm(worker, case):
    worker.check(case)


@examples(40)
@given(fs.matmul_cases())
def test_ops_matmul(worker, case):
    worker.check(case)


@examples(60)
@given(fs.api_conv_cases("fwd"))
def test_ops_conv2d(worker, case):
    worker.check(case)


@examples(40)
@given(fs.api_conv_cases("data"))
def test_ops_conv2d_backward_data(worker, case):
    worker.check(case)


@examples(40)
@given(fs.api_conv_cases("weight"))
def test_ops_conv2d_backward_weight(worker, case):
    worker.check(case)


@examples(40)
@given(fs.api_pool_cases("max"))
def test_ops_max_pool2d(worker, case):
    worker.check(case)


@examples(30)
@given(fs.api_pool_cases("max_backward"))
def test_ops_max_pool2d_backward(worker, case):
    worker.check(case)


@examples(40)
@given(fs.api_pool_cases("avg"))
def test_ops_avg_pool2d(worker, case):
    worker.check(case)


@examples(30)
@given(fs.api_pool_cases("avg_backward"))
def test_ops_avg_pool2d_backward(worker, case):
    worker.check(case)


@examples(30)
@given(fs.api_pool_cases("adaptive"))
def test_ops_adaptive_avg_pool2d(worker, case):
    worker.check(case)


@examples(30)
@given(fs.api_pool_cases("adaptive_backward"))
def test_ops_adaptive_avg_pool2d_backward(worker, case):
    worker.check(case)


@examples(150)
@given(fs.api_xent_cases("fwd"))
def test_ops_softmax_cross_entropy(worker, case):
    worker.check(case)


@examples(40)
@given(fs.api_xent_cases("bwd"))
def test_ops_softmax_cross_entropy_backward(worker, case):
    worker.check(case)


@examples(30)
@given(fs.api_xent_cases("linear"))
def test_ops_linear_cross_entropy(worker, case):
    worker.check(case)


@examples(80)
@given(fs.api_quant_cases())
def test_quant_matmul(worker, case):
    worker.check(case)


@examples(40)
@given(fs.api_qweight_cases())
def test_quantized_weight(worker, case):
    worker.check(case)
