"""1-D float Conv on the 2-D convolution (graph.rewrite.conv1d_as_conv2d): the Conv native,
against the reference, node by node and on the plan, over strides, dilations, pads,
auto_pad, groups and bias (hypothesis); a chain of two."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from qkernels.graph import Session  # noqa: E402


def _conv_model(C, O, K, L, groups, attrs, bias, chain=False):
    rng = np.random.default_rng(C * 31 + O * 7 + K)
    inits = [numpy_helper.from_array(rng.standard_normal((O, C // groups, K)).astype(np.float32), "w")]
    ins = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(O).astype(np.float32), "b"))
        ins.append("b")
    nodes = [helper.make_node("Conv", ins, ["y"], group=groups, **attrs)]
    if chain:
        inits.append(numpy_helper.from_array(rng.standard_normal((3, O, 1)).astype(np.float32), "w2"))
        nodes.append(helper.make_node("Conv", ["y", "w2"], ["z"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, C, L])],
                              [helper.make_tensor_value_info("z" if chain else "y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@settings(max_examples=40, deadline=None)
@given(C=st.sampled_from([1, 2, 3, 4]), O=st.sampled_from([1, 2, 5, 17]), K=st.sampled_from([1, 2, 3, 5]),
       L=st.sampled_from([5, 8, 13]), stride=st.sampled_from([1, 2, 3]), dilation=st.sampled_from([1, 2]),
       pads=st.sampled_from([(0, 0), (1, 2), "SAME_UPPER", "SAME_LOWER", "VALID"]), grouped=st.booleans(),
       bias=st.booleans(), chain=st.booleans())
def test_conv1d_native_matches_reference(C, O, K, L, stride, dilation, pads, grouped, bias, chain):
    groups = C if grouped and O % C == 0 else 1
    if (K - 1) * dilation + 1 > L:
        return
    attrs = dict(strides=[stride], dilations=[dilation], kernel_shape=[K])
    if isinstance(pads, str):
        if pads.startswith("SAME") and dilation != 1:
            return
        attrs["auto_pad"] = pads
    else:
        attrs["pads"] = list(pads)
    model = _conv_model(C, O, K, L, groups, attrs, bias, chain)
    x = np.random.default_rng(L).standard_normal((2, C, L)).astype(np.float32)
    want = Session(model, backends=["reference"]).run(None, {"x": x})[0]
    s = Session(model)
    assert all(s.placement(n) == "native" for n in s.graph.nodes if n.op_type == "Conv")
    first, second = s.run(None, {"x": x})[0], s.run(None, {"x": x})[0]
    assert s.last_run == "plan"
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first, want, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(want).max())))
