"""Conformance of the graph runner's operators with the ONNX package's backend node
tests (``onnx.backend.test``), through :mod:`qkernels.graph.onnx_backend`, once on the
``reference`` backend (numpy, the oracle of the other tests) and once on ``cpu``.

INCLUDE names, for every operator the reference backend implements, the node tests of
that operator (their ``_expanded`` variants, the operator's ONNX function body, are
included too: they exercise the operators it expands to). Node tests of operators we
do not implement are not collected at all.

EXCLUDE lists the included tests that are skipped, each with its reason:

* element types the runner does not compute on: bfloat16, float8 (e4m3fn, e4m3fnuz,
  e5m2, e5m2fnuz, e8m0), float4e2m1, int4/uint4, int2/uint2 (Cast, CastLike,
  QuantizeLinear, DequantizeLinear and a few bfloat16 variants of other operators);
  these nodes are refused with the reason, never computed in another type;
* sequence and optional values (Identity on a sequence / an optional);
* Dropout in training mode with a non-zero ratio: random, not reproducible (refused);
* included tests whose model needs an operator we do not implement: skipped with the
  operator named, computed by ``_collect`` (from the main graph: the If/Loop tests whose
  subgraphs make sequences or optionals are listed in EXCLUDE, as is Scan-8);
* one float16 ``_expanded`` Attention test whose expected values round every MatMul and
  Softmax step to float16 while ours round once from float32 (1-ulp differences).

COMPOSED adds the ``_expanded`` tests of operators we do not implement (Attention,
RotaryEmbedding, NegativeLogLikelihoodLoss, ...) whose function bodies use only
operators we do.

Models of opset < 13 (41 included tests: ConvInteger, MatMulInteger, QLinearConv,
DynamicQuantizeLinear, old Dropout, And/Or/Xor/Not, Shrink at opsets 1 to 11) are
converted to opset 13 by the runner itself when it loads them
(``graph.model.upgrade_opset``, with ``onnx.version_converter``).
The MaxPool ``Indices`` output is implemented (row- and column-major storage_order);
every Resize test (all modes, coordinate transformations, nearest modes, antialias,
axes, keep_aspect_ratio_policy) and every ConvTranspose test runs, none skipped.
"""
from __future__ import annotations

import functools
import re
import unittest
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx.backend.test import BackendTest  # noqa: E402
from onnx.backend.test.loader import load_model_tests  # noqa: E402

from qkernels.graph.backends.reference import OPS  # noqa: E402
from qkernels.graph.onnx_backend import CpuBackend, ReferenceBackend  # noqa: E402

# operator -> regexes of its node tests (matched with re.search on the test name)
INCLUDE: dict[str, list[str]] = {
    "Abs": [r"^test_abs_"], "Acos": [r"^test_acos_"], "Acosh": [r"^test_acosh_"], "Add": [r"^test_add_"],
    "And": [r"^test_and"], "ArgMax": [r"^test_argmax_"], "ArgMin": [r"^test_argmin_"],
    "Asin": [r"^test_asin_"], "Asinh": [r"^test_asinh_"], "Atan": [r"^test_atan_"], "Atanh": [r"^test_atanh_"],
    "AveragePool": [r"^test_averagepool_"], "BatchNormalization": [r"^test_batchnorm_"],
    "BitShift": [r"^test_bitshift_"], "BitwiseAnd": [r"^test_bitwise_and_"], "BitwiseNot": [r"^test_bitwise_not_"],
    "BitwiseOr": [r"^test_bitwise_or_"], "BitwiseXor": [r"^test_bitwise_xor_"], "Cast": [r"^test_cast_"],
    "CastLike": [r"^test_castlike_"], "Ceil": [r"^test_ceil_"], "Celu": [r"^test_celu_"], "Clip": [r"^test_clip_"],
    "Compress": [r"^test_compress_"], "Concat": [r"^test_concat_"], "Constant": [r"^test_constant_cpu"],
    "ConstantOfShape": [r"^test_constantofshape_"],
    "Conv": [r"^test_basic_conv_", r"^test_conv_with_"], "ConvInteger": [r"^test_convinteger_"],
    "ConvTranspose": [r"^test_convtranspose"],
    "Cos": [r"^test_cos_"], "Cosh": [r"^test_cosh_"], "CumSum": [r"^test_cumsum_"],
    "DepthToSpace": [r"^test_depthtospace_"], "DequantizeLinear": [r"^test_dequantizelinear"],
    "Det": [r"^test_det_"], "Div": [r"^test_div_"], "Dropout": [r"^test_dropout_", r"^test_training_dropout"],
    "DynamicQuantizeLinear": [r"^test_dynamicquantizelinear"], "Einsum": [r"^test_einsum_"],
    "Elu": [r"^test_elu_"], "Equal": [r"^test_equal_"], "Erf": [r"^test_erf_"], "Exp": [r"^test_exp_"],
    "Expand": [r"^test_expand_dim_"], "EyeLike": [r"^test_eyelike_"], "Flatten": [r"^test_flatten_"],
    "Floor": [r"^test_floor_"], "Gather": [r"^test_gather_[0-9]", r"^test_gather_negative_"],
    "GatherElements": [r"^test_gather_elements_"], "GatherND": [r"^test_gathernd_"], "Gelu": [r"^test_gelu_"],
    "Gemm": [r"^test_gemm_"], "GlobalAveragePool": [r"^test_globalaveragepool"],
    "GRU": [r"^test_gru_"],
    "GlobalMaxPool": [r"^test_globalmaxpool"], "Greater": [r"^test_greater_"],
    "GreaterOrEqual": [r"^test_greater_equal"], "GroupNormalization": [r"^test_group_normalization_"],
    "HardSigmoid": [r"^test_hardsigmoid_"], "HardSwish": [r"^test_hardswish_"], "Hardmax": [r"^test_hardmax_"],
    "Identity": [r"^test_identity_"], "InstanceNormalization": [r"^test_instancenorm_"],
    "IsInf": [r"^test_isinf_"], "IsNaN": [r"^test_isnan_"], "LRN": [r"^test_lrn_"],
    "LSTM": [r"^test_lstm_"],
    "LayerNormalization": [r"^test_layer_normalization_"], "LeakyRelu": [r"^test_leakyrelu_"],
    "Less": [r"^test_less_"], "LessOrEqual": [r"^test_less_equal"], "Log": [r"^test_log_"],
    "LogSoftmax": [r"^test_logsoftmax_"],
    "LpNormalization": [r"^test_l1normalization_", r"^test_l2normalization_", r"^test_lpnormalization_"],
    "MatMul": [r"^test_matmul_"], "MatMulInteger": [r"^test_matmulinteger_"], "Max": [r"^test_max_"],
    "MaxPool": [r"^test_maxpool_"], "Mean": [r"^test_mean_"], "Min": [r"^test_min_"], "Mish": [r"^test_mish_"],
    "Mod": [r"^test_mod_"], "Mul": [r"^test_mul_"], "Neg": [r"^test_neg_"], "NonZero": [r"^test_nonzero_"],
    "Not": [r"^test_not_"], "OneHot": [r"^test_onehot_"], "Or": [r"^test_or"], "PRelu": [r"^test_prelu_"],
    "Pad": [r"^test_(constant|edge|reflect|wrap)_pad"], "Pow": [r"^test_pow_"],
    "QLinearConv": [r"^test_qlinearconv_"], "QLinearMatMul": [r"^test_qlinearmatmul_"],
    "QuantizeLinear": [r"^test_quantizelinear"], "RMSNormalization": [r"^test_rms_normalization_"],
    "Range": [r"^test_range_"], "Reciprocal": [r"^test_reciprocal_"], "ReduceL1": [r"^test_reduce_l1_"],
    "RNN": [r"^test_simple_rnn_", r"^test_rnn_seq_length"],
    "ReduceL2": [r"^test_reduce_l2_"], "ReduceLogSum": [r"^test_reduce_log_sum_(?!exp)"],
    "ReduceLogSumExp": [r"^test_reduce_log_sum_exp_"], "ReduceMax": [r"^test_reduce_max_"],
    "ReduceMean": [r"^test_reduce_mean_"], "ReduceMin": [r"^test_reduce_min_"],
    "ReduceProd": [r"^test_reduce_prod_"], "ReduceSum": [r"^test_reduce_sum_(?!square)"],
    "ReduceSumSquare": [r"^test_reduce_sum_square_"], "Relu": [r"^test_relu_"], "Reshape": [r"^test_reshape_"],
    "Resize": [r"^test_resize_"],
    "Round": [r"^test_round_"], "ScatterElements": [r"^test_scatter_elements_"], "ScatterND": [r"^test_scatternd_"],
    "Selu": [r"^test_selu_"], "Shape": [r"^test_shape_"], "Shrink": [r"^test_shrink_"],
    "Sigmoid": [r"^test_sigmoid_"], "Sign": [r"^test_sign_"], "Sin": [r"^test_sin_"], "Sinh": [r"^test_sinh_"],
    "Size": [r"^test_size_"], "Slice": [r"^test_slice_"], "Softmax": [r"^test_softmax_"],
    "Softplus": [r"^test_softplus_"], "Softsign": [r"^test_softsign_"], "SpaceToDepth": [r"^test_spacetodepth_"],
    "Split": [r"^test_split_(?!to_sequence)"], "Sqrt": [r"^test_sqrt_"], "Squeeze": [r"^test_squeeze_"],
    "Sub": [r"^test_sub_"],
    "Sum": [r"^test_sum_"], "Swish": [r"^test_swish_"], "Tan": [r"^test_tan_"], "Tanh": [r"^test_tanh_"],
    "ThresholdedRelu": [r"^test_thresholdedrelu_"], "Tile": [r"^test_tile_"], "TopK": [r"^test_top_k"],
    "Transpose": [r"^test_transpose_"], "Trilu": [r"^test_tril_", r"^test_triu_"],
    "Unsqueeze": [r"^test_unsqueeze_"], "Where": [r"^test_where_"], "Xor": [r"^test_xor"],
    "If": [r"^test_if"], "Loop": [r"^test_loop"], "Scan": [r"^test_scan"],      # control flow
}

# the ``_expanded`` tests of operators we do not implement whose function bodies use
# only operators we do: more conformance of those operators, composed
COMPOSED = [r"^test_(attention|flexattention|rotary_embedding|causal_conv_with_state|center_crop_pad|mvn|nllloss|"
            r"swiglu|blackmanwindow|hammingwindow|hannwindow)_.*expanded"]
COMPOSED += [r"^test_(affine_grid|linear_attention)_.*expanded"]      # (their bodies use If / Scan)

_NARROW = r"(FLOAT8|FLOAT4E2M1|INT4|INT2|BFLOAT16)"   # UINT4/UINT2 contain INT4/INT2
# regex -> why the matching tests are skipped
EXCLUDE: dict[str, str] = {
    rf"^test_cast_.*{_NARROW}|^test_cast_e8m0_": "element type not supported (float8, float4, int4, int2, bfloat16)",
    rf"^test_castlike_.*{_NARROW}": "element type not supported (float8, float4, int4, int2, bfloat16)",
    r"^test_(de)?quantizelinear_(e4m3fn|e5m2|uint4|int4|uint2|int2|float4e2m1)":
        "quantized type not supported (float8, float4, int4, int2): uint8/int8/uint16/int16 only",
    r"^test_(celu|einsum_[a-z_]+)_bfloat16|^test_attention_.*_bf16_expanded": "bfloat16 arithmetic not supported",
    r"^test_attention_4d_causal_fp16_expanded":
        "float16 graph: the expected values round every MatMul/Softmax step to float16, ours round once from "
        "float32 (1-ulp differences beyond the test's rtol=1e-3)",
    r"^test_identity_(sequence|opt)_": "sequence and optional values not supported (tensors only)",
    r"^test_(if_seq|if_opt|loop13_seq|loop16_seq_none)_":
        "sequence and optional values not supported (tensors only): the subgraphs make sequences / optionals",
    r"^test_range_bfloat16_type_positive_delta_expanded": "bfloat16 arithmetic not supported",
    r"^test_scan_sum_cpu$": "Scan-8 (opset 8, batched): converted to Scan-9 at load, whose inputs have no batch "
                            "axis, while the test feeds the batched shapes (opset 9+ Scan runs)",
    r"^test_training_dropout(_default)?(_mask)?_cpu$":
        "training-mode Dropout with a non-zero ratio is random (refused, not reproducible)",
}


@functools.lru_cache(maxsize=None)
def _case_ops() -> dict[str, set]:
    with warnings.catch_warnings():   # the test cases compute their data on import (inf, nan)
        warnings.simplefilter("ignore")
        cases = load_model_tests(kind="node")
    return {c.name: {(n.domain or "", n.op_type) for n in c.model.graph.node} for c in cases}


def _unimplemented(ops: set) -> list[str]:
    return sorted(op for d, op in ops if d not in ("", "ai.onnx") or op not in OPS)


def _collect(backend, name: str) -> type:
    """A unittest.TestCase of the included node tests (CPU device) for ``backend``."""
    ops = _case_ops()
    runner = BackendTest(backend, __name__)
    for patterns in [*INCLUDE.values(), COMPOSED]:
        for p in patterns:
            runner.include(p)
    cases = runner.test_cases["OnnxBackendNodeModelTest"]
    attrs = {}
    for test, fn in sorted(vars(cases).items()):
        if not test.startswith("test_") or not test.endswith("_cpu"):
            continue
        if getattr(fn, "__unittest_skip_why__", "") == "no matched include pattern":
            continue
        why = next((w for p, w in EXCLUDE.items() if re.search(p, test)), None)
        if why is None:
            missing = _unimplemented(ops.get(test[:-len("_cpu")], set()))
            if missing:
                why = f"needs operator(s) {', '.join(missing)}, not implemented"
        attrs[test] = unittest.skip(why)(fn) if why else fn
    return type(name, (unittest.TestCase,), attrs)


def _twice(backend: type) -> type:
    """``backend`` whose models run twice per call: the first run traces the graph node by
    node and compiles the session's static plan, the second runs on the plan (graph.plan);
    both must give the same arrays, and the second goes to the test's check."""
    class Twice(backend):
        @classmethod
        def prepare(cls, model, device="CPU", **kwargs):
            rep = super().prepare(model, device, **kwargs)
            once = rep.run

            def run(inputs, **kw):
                first = once(inputs, **kw)
                second = once(inputs, **kw)
                assert rep.session.last_run in ("plan", "nodes")
                for a, b in zip(first, second):
                    np.testing.assert_array_equal(a, b)
                return second
            rep.run = run
            return rep
    Twice.__name__ = backend.__name__
    return Twice


TestReferenceNodeConformance = _collect(_twice(ReferenceBackend), "TestReferenceNodeConformance")
TestCpuNodeConformance = _collect(_twice(CpuBackend), "TestCpuNodeConformance")


def test_every_default_domain_operator_is_covered():
    """Each ONNX-domain operator of the reference backend has node tests included."""
    ops = _case_ops()
    covered = set()
    for test, fn in vars(TestReferenceNodeConformance).items():
        if test.startswith("test_") and not getattr(fn, "__unittest_skip__", False):
            covered |= {op for d, op in ops[test[:-len("_cpu")]] if not d}
    implemented = {k for k in OPS if "::" not in k}
    assert implemented - covered == set()
    assert set(INCLUDE) == implemented
