"""The Python API over the kernels (the doors of ember.kernels, ember.quant), fuzzed with the same
property as the bindings: the fast function against its *_ref twin (or NumPy), named errors, no
crash, no write outside `out`, inputs unchanged."""

from hypothesis import given

import fuzz_strategies as fs
from fuzz_settings import examples


@examples(60)
@given(fs.gemm_cases(api=True))
def test_gemm_door(worker, case):
    worker.check(case)


@examples(40)
@given(fs.matmul_cases())
def test_matmul_door(worker, case):
    worker.check(case)


@examples(60)
@given(fs.api_conv_cases("fwd"))
def test_conv2d_fwd_door(worker, case):
    worker.check(case)


@examples(40)
@given(fs.api_conv_cases("data"))
def test_conv2d_bwd_data_door(worker, case):
    worker.check(case)


@examples(40)
@given(fs.api_conv_cases("weight"))
def test_conv2d_bwd_weight_door(worker, case):
    worker.check(case)


@examples(40)
@given(fs.api_pool_cases("max"))
def test_max_pool2d_fwd_door(worker, case):
    worker.check(case)


@examples(30)
@given(fs.api_pool_cases("max_backward"))
def test_max_pool2d_bwd_door(worker, case):
    worker.check(case)


@examples(40)
@given(fs.api_pool_cases("avg"))
def test_avg_pool2d_fwd_door(worker, case):
    worker.check(case)


@examples(30)
@given(fs.api_pool_cases("avg_backward"))
def test_avg_pool2d_bwd_door(worker, case):
    worker.check(case)


@examples(30)
@given(fs.api_pool_cases("adaptive"))
def test_adaptive_avg_pool2d_fwd_door(worker, case):
    worker.check(case)


@examples(30)
@given(fs.api_pool_cases("adaptive_backward"))
def test_adaptive_avg_pool2d_bwd_door(worker, case):
    worker.check(case)


@examples(150)
@given(fs.api_xent_cases("fwd"))
def test_cross_entropy_fwd_door(worker, case):
    worker.check(case)


@examples(40)
@given(fs.api_xent_cases("bwd"))
def test_cross_entropy_bwd_door(worker, case):
    worker.check(case)


@examples(30)
@given(fs.api_xent_cases("linear"))
def test_linear_cross_entropy_door(worker, case):
    worker.check(case)


@examples(80)
@given(fs.api_quant_cases())
def test_quant_matmul(worker, case):
    worker.check(case)


@examples(40)
@given(fs.api_qweight_cases())
def test_quantized_weight(worker, case):
    worker.check(case)


@examples(20)
@given(fs.eltwise_cases("relu_fwd", door=True))
def test_relu_fwd_door(worker, case):
    worker.check(case)


@examples(20)
@given(fs.eltwise_cases("relu_bwd", door=True))
def test_relu_bwd_door(worker, case):
    worker.check(case)


@examples(20)
@given(fs.eltwise_cases("erf", door=True))
def test_erf_door(worker, case):
    worker.check(case)


@examples(30)
@given(fs.adam_cases(door=True))
def test_adam_step_door(worker, case):
    worker.check(case)


@examples(30)
@given(fs.sgd_cases(door=True))
def test_sgd_step_door(worker, case):
    worker.check(case)
