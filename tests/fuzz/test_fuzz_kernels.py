"""Every native binding of ember._C, fuzzed: its result is the reference's on contiguous copies,
or a named ValueError/TypeError/OverflowError/MemoryError; never a crash, a hang, or a write
outside its outputs (see fuzz_ops for the property, fuzz_strategies for the cases)."""

from hypothesis import given

import fuzz_strategies as fs
from fuzz_settings import examples


@examples(120)
@given(fs.gemm_cases())
def test_gemm(worker, case):
    worker.check(case)


@examples(80)
@given(fs.conv_fwd_cases())
def test_conv2d_fwd(worker, case):
    worker.check(case)


@examples(60)
@given(fs.conv_bwd_data_cases())
def test_conv2d_bwd_data(worker, case):
    worker.check(case)


@examples(60)
@given(fs.conv_bwd_weight_cases())
def test_conv2d_bwd_weight(worker, case):
    worker.check(case)


@examples(60)
@given(fs.max_pool_fwd_cases())
def test_max_pool2d_fwd(worker, case):
    worker.check(case)


@examples(40)
@given(fs.max_pool_bwd_cases())
def test_max_pool2d_bwd(worker, case):
    worker.check(case)


@examples(50)
@given(fs.avg_pool_cases())
def test_avg_pool2d_fwd(worker, case):
    worker.check(case)


@examples(40)
@given(fs.avg_pool_cases(backward=True))
def test_avg_pool2d_bwd(worker, case):
    worker.check(case)


@examples(40)
@given(fs.adaptive_cases())
def test_adaptive_avg_pool2d_fwd(worker, case):
    worker.check(case)


@examples(30)
@given(fs.adaptive_cases(backward=True))
def test_adaptive_avg_pool2d_bwd(worker, case):
    worker.check(case)


@examples(60)
@given(fs.xent_cases())
def test_cross_entropy_fwd(worker, case):
    worker.check(case)


@examples(60)
@given(fs.xent_cases(backward=True))
def test_cross_entropy_bwd(worker, case):
    worker.check(case)


@examples(50)
@given(fs.adam_cases())
def test_adam_step(worker, case):
    worker.check(case)


@examples(40)
@given(fs.sgd_cases())
def test_sgd_step(worker, case):
    worker.check(case)


@examples(30)
@given(fs.eltwise_cases("relu_fwd"))
def test_relu_fwd(worker, case):
    worker.check(case)


@examples(30)
@given(fs.eltwise_cases("relu_bwd"))
def test_relu_bwd(worker, case):
    worker.check(case)


@examples(30)
@given(fs.eltwise_cases("erf"))
def test_erf(worker, case):
    worker.check(case)


@examples(100)
@given(fs.qmatmul_cases(8))
def test_qmatmul_int8(worker, case):
    worker.check(case)


@examples(100)
@given(fs.qmatmul_cases(4))
def test_qmatmul_int4(worker, case):
    worker.check(case)


@examples(40)
@given(fs.empty_cases())
def test_empty(worker, case):
    worker.check(case)


@examples(40)
@given(fs.runtime_cases())
def test_runtime_controls(worker, case):
    worker.check(case)


@examples(20)
@given(fs.bandwidth_cases())
def test_measure_read_bandwidth(worker, case):
    worker.check(case)
