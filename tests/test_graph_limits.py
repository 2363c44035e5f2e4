"""Bounded resources of the graph runner (issue 12, points 6 and 7): what a model may
make the runner read or allocate at load (files, external data, constant folding),
and planning time that grows near-linearly with the number of nodes."""
import os
import stat
import threading
import time
import tracemalloc
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from qkernels.graph import Backend, ModelError, RunError, Session  # noqa: E402
from qkernels.graph import fold, model as model_module  # noqa: E402
from qkernels.graph.backends.reference import run_node  # noqa: E402
from qkernels.graph.ir import Graph, Node, topological  # noqa: E402
from qkernels.graph.partition import partition  # noqa: E402

MiB = 1 << 20


def make_model(nodes, inputs=(), outputs=("y",), inits=(), out_type=TensorProto.FLOAT):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in inputs],
                          [helper.make_tensor_value_info(n, out_type, None) for n in outputs],
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in inits])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@contextmanager
def peak_memory():
    """Yields a list that holds, after the block, the peak bytes Python allocated in it."""
    out = []
    tracemalloc.start()
    try:
        yield out
    finally:
        out.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()


# ------------------------------------------------------------------ files (point 6)

@contextmanager
def fifo(path):
    """A FIFO at ``path``; a helper thread writes to it (garbage, then EOF) if ever a reader
    opens it, so a runner that wrongly opens it fails the test instead of hanging."""
    os.mkfifo(path)
    done = threading.Event()

    def unblock():
        while not done.is_set():
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)   # ENXIO while nobody reads
            except OSError:
                time.sleep(0.01)
                continue
            os.write(fd, b"garbage")
            os.close(fd)
            return

    t = threading.Thread(target=unblock, daemon=True)
    t.start()
    try:
        yield path
    finally:
        done.set()
        t.join()


def external_model(folder, dims=(4, 4), **entries):
    """A model whose initializer w (float32 ``dims``) keeps its data in an external file;
    ``entries`` are its external_data keys (location, offset, length)."""
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=list(dims))
    w.data_location = TensorProto.EXTERNAL
    for k, v in entries.items():
        e = w.external_data.add()
        e.key, e.value = k, str(v)
    m = make_model([helper.make_node("Identity", ["w"], ["y"])])
    m.graph.initializer.append(w)
    path = os.path.join(folder, "m.onnx")
    with open(path, "wb") as f:
        f.write(m.SerializeToString())
    return path


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_as_model_or_external_data_is_refused_without_blocking(tmp_path):
    with fifo(str(tmp_path / "pipe.onnx")) as path, pytest.raises(ModelError, match="not a regular file"):
        Session(path)
    with fifo(str(tmp_path / "w.bin")), pytest.raises(ModelError, match="not a regular file"):
        Session(external_model(str(tmp_path), location="w.bin"))


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_device_file_as_model_is_refused():
    assert not stat.S_ISREG(os.stat("/dev/zero").st_mode)
    with pytest.raises(ModelError, match="not a regular file"):
        Session("/dev/zero")


def test_folders_and_oversized_model_files_are_refused(tmp_path):
    with pytest.raises(ModelError, match="not a regular file"):
        Session(str(tmp_path))
    big = tmp_path / "big.onnx"
    with open(big, "wb") as f:
        f.truncate(model_module.MAX_MODEL_BYTES + 1)   # sparse: costs no disk, and must not be read
    with peak_memory() as peak, pytest.raises(ModelError, match="2 GiB"):
        Session(str(big))
    assert peak[0] < 8 * MiB


def test_declared_external_length_is_checked_before_any_allocation(tmp_path):
    w = np.arange(16, dtype=np.float32)
    (tmp_path / "w.bin").write_bytes(w.tobytes())
    with peak_memory() as peak:
        with pytest.raises(ModelError, match="take 64 bytes"):      # length disagrees with dims 4x4 float
            Session(external_model(str(tmp_path), location="w.bin", length=1 << 40))
        with pytest.raises(ModelError, match="64 bytes"):           # dims need 4 GiB of a 64-byte file
            Session(external_model(str(tmp_path), dims=(1 << 30,), location="w.bin"))
        with pytest.raises(ModelError, match="64 bytes"):           # the span ends past the file
            Session(external_model(str(tmp_path), location="w.bin", offset=8, length=64))
        with pytest.raises(ModelError, match="integers"):
            Session(external_model(str(tmp_path), location="w.bin", offset="x"))
    assert peak[0] < 8 * MiB
    got = Session(external_model(str(tmp_path), location="w.bin", offset=0, length=64)).run(None, {})[0]
    np.testing.assert_array_equal(got, w.reshape(4, 4))


def test_external_data_reads_only_the_bytes_the_tensor_takes(tmp_path):
    w = np.arange(16, dtype=np.float32)
    with open(tmp_path / "w.bin", "wb") as f:
        f.write(w.tobytes())
        f.truncate(512 * MiB)   # sparse: 512 MiB of file, no disk
    with peak_memory() as peak:
        s = Session(external_model(str(tmp_path), location="w.bin"))   # no length: what 4x4 float32 takes
    assert peak[0] < 16 * MiB
    np.testing.assert_array_equal(s.run(None, {})[0], w.reshape(4, 4))


# ------------------------------------------------------------- constant folding (point 6)

def const_of_shape(n):
    return make_model([helper.make_node("ConstantOfShape", ["shape"], ["y"], name="cos")],
                      inits=[("shape", np.array([n], np.int64))])


@pytest.mark.parametrize("n", [1 << 28, 1 << 30])
def test_big_constant_of_shape_is_not_folded_at_load(n):
    model = const_of_shape(n).SerializeToString()
    assert len(model) < 200
    with peak_memory() as peak:
        s = Session(model)
    assert peak[0] < 8 * MiB
    assert [node.name for node in s.graph.nodes] == ["cos"]   # left to run time


def test_left_to_run_time_beyond_the_element_limit_is_a_clear_error():
    s = Session(const_of_shape(1 << 40))
    with pytest.raises((ModelError, RunError), match="cos"):
        s.run(None, {})


def test_fold_limit_bounds_each_folded_value():
    small = const_of_shape(1000)
    assert Session(small).graph.nodes == []                   # folded: a constant
    s = Session(small, fold_limit=1000)                       # 4000 bytes > 1000: run time
    assert [n.op_type for n in s.graph.nodes] == ["ConstantOfShape"]
    np.testing.assert_array_equal(s.run(None, {})[0], np.zeros(1000, np.float32))
    ones = numpy_helper.from_array(np.ones(1000, np.float32))
    weights = make_model([helper.make_node("Constant", [], ["c"], value=ones),
                          helper.make_node("Add", ["x", "c"], ["y"])], inputs=["x"])
    assert [n.op_type for n in Session(weights, fold_limit=0).graph.nodes] == ["Add"]   # in the model already
    for bad in (-1, 1.5, True, "64"):
        with pytest.raises(ValueError, match="fold_limit"):
            Session(small, fold_limit=bad)


def _i64(*v):
    return np.array(v, np.int64)


#: op, inputs (name, value), attrs, and a scale factor k: output elements grow as k (or k*k)
_GROWING = {
    "ConstantOfShape": lambda k: ([("a", _i64(k, 4))], {}),
    "Expand": lambda k: ([("a", np.ones((1, 4), np.float32)), ("b", _i64(k, 4))], {}),
    "Tile": lambda k: ([("a", np.ones((2, 2), np.float32)), ("b", _i64(k, 2))], {}),
    "Range": lambda k: ([("a", np.array(0, np.float32)), ("b", np.array(4 * k, np.float32)),
                         ("c", np.array(1, np.float32))], {}),
    "Pad": lambda k: ([("a", np.ones((4, 4), np.float32)), ("b", _i64(0, 0, k, 0))], {}),
    "OneHot": lambda k: ([("a", np.arange(4, dtype=np.int64)), ("b", _i64(k)),
                          ("c", np.array([0, 1], np.float32))], {}),
    "MatMul": lambda k: ([("a", np.ones((k, 1), np.float32)), ("b", np.ones((1, k), np.float32))], {}),
    "Gemm": lambda k: ([("a", np.ones((1, k), np.float32)), ("b", np.ones((1, k), np.float32))], {"transA": 1}),
    "Add": lambda k: ([("a", np.ones((k, 1), np.float32)), ("b", np.ones((1, k), np.float32))], {}),
    "Gather": lambda k: ([("a", np.ones((1, k), np.float32)), ("b", np.zeros(k, np.int64))], {}),
    "Resize": lambda k: ([("a", np.ones((1, 1, 2, 2), np.float32)), ("r", np.zeros(0, np.float32)),
                          ("s", np.array([1, 1, k, 1], np.float32))], {}),
    "ConvTranspose": lambda k: ([("a", np.ones((1, 1, 1, 2), np.float32)), ("b", np.ones((1, 4, 1, 1), np.float32))],
                                {"strides": [1, k]}),
}
_SQUARE = {"MatMul", "Gemm", "Add", "Gather"}   # outputs of k*k elements


def _growing_model(op, k):
    inputs, attrs = _GROWING[op](k)
    node = helper.make_node(op, [n for n, _ in inputs], ["y"], name="big", **attrs)
    return make_model([node], inits=inputs)


@pytest.mark.parametrize("op", sorted(_GROWING))
def test_size_estimate_before_folding_matches_what_the_operator_makes(op):
    for k in (1, 3, 8):
        inputs, attrs = _GROWING[op](k)
        node = Node("big", op, "", [n for n, _ in inputs], ["y"], attrs)
        made = run_node(node, dict(inputs))["y"]
        assert fold._elements(node, [v for _, v in inputs]) == made.size


@pytest.mark.parametrize("op", sorted(_GROWING))
def test_outputs_beyond_the_fold_limit_are_never_computed_at_load(op):
    k = 1 << 13 if op in _SQUARE else 1 << 24       # 2**26 float32 elements: 256 MiB
    with peak_memory() as peak:
        s = Session(_growing_model(op, k).SerializeToString())
    assert peak[0] < 16 * MiB
    assert [n.name for n in s.graph.nodes] == ["big"]
    assert Session(_growing_model(op, 4)).graph.nodes == []   # small: folded


# ------------------------------------------------------------------ planning (point 7)

def wide(n):
    """n independent Relu nodes, each reading the input and each a graph output."""
    return make_model([helper.make_node("Relu", ["x"], [f"y{i}"], name=f"r{i}") for i in range(n)],
                      inputs=["x"], outputs=[f"y{i}" for i in range(n)])


def constant_chain(n):
    """n nodes: Constant nodes, each added to the running sum of the ones before."""
    nodes = [helper.make_node("Constant", [], ["s0"], value_float=1.0)]
    for i in range(1, n // 2):
        nodes += [helper.make_node("Constant", [], [f"c{i}"], value_float=1.0),
                  helper.make_node("Add", [f"s{i - 1}", f"c{i}"], [f"s{i}"])]
    nodes.append(helper.make_node("Add", ["x", f"s{n // 2 - 1}"], ["y"]))
    return make_model(nodes, inputs=["x"])


def dead_chain(n):
    """A chain of n Relu nodes that no output reads (dropped when planning)."""
    nodes = [helper.make_node("Relu", ["x" if i == 0 else f"d{i - 1}"], [f"d{i}"]) for i in range(n)]
    return make_model(nodes + [helper.make_node("Relu", ["x"], ["y"])], inputs=["x"])


def plan_seconds(model, tries=5):
    data = model.SerializeToString()
    best = float("inf")
    for _ in range(tries):
        t = time.perf_counter()
        Session(data)
        best = min(best, time.perf_counter() - t)
    return best


@pytest.mark.parametrize("shape", [wide, constant_chain, dead_chain])
def test_planning_time_grows_near_linearly(shape):
    # quadratic planning took 4.9 s for 4000 wide nodes, 16x the time of 1000; linear is
    # 4.7-4.9x on a quiet machine, and reached 8.2x with the other core busy (the full suite)
    small, big = plan_seconds(shape(1000)), plan_seconds(shape(4000))
    assert big < 2.0, f"{shape.__name__}: 4000 nodes planned in {big:.2f} s"
    assert big < 11 * small, f"{shape.__name__}: 4x the nodes took {big / small:.1f}x the time"


def test_wide_and_constant_chain_plans_are_right():
    x = np.array([-1.0, 2.0], np.float32)
    s = Session(wide(50))
    assert len(s.partitions) == 1
    for got in s.run(None, {"x": x}):
        np.testing.assert_array_equal(got, np.maximum(x, 0))
    s = Session(constant_chain(200))
    assert [n.op_type for n in s.graph.nodes] == ["Add"]      # the chain folded to one constant
    np.testing.assert_array_equal(s.run(None, {"x": x})[0], x + 100)


# -------------------------- the same orders as the simple quadratic definitions (point 7)

def earliest_ready_order(nodes, available):
    """The definition: repeatedly the earliest node (in model order) whose inputs exist."""
    have, left, order = set(available), list(nodes), []
    while left:
        n = next(n for n in left if all(not i or i in have for i in n.inputs))
        left.remove(n)
        order.append(n)
        have.update(n.outputs)
    return order


def grouped_partitions(nodes, owner):
    """The definition: the earliest ready node of the current backend, else the earliest."""
    have, left, parts = set(), list(nodes), []
    while left:
        ready = [n for n in left if all(not i or i == "x" or i in have for i in n.inputs)]
        same = [n for n in ready if parts and owner[n.name] == parts[-1][0]]
        n = (same or ready)[0]
        left.remove(n)
        have.update(n.outputs)
        if parts and owner[n.name] == parts[-1][0]:
            parts[-1][1].append(n.name)
        else:
            parts.append((owner[n.name], [n.name]))
    return parts


class Named(Backend):
    def __init__(self, name, takes):
        self.name, self.takes = name, takes

    def supports(self, node, graph):
        return node.name in self.takes


@st.composite
def dags(draw):
    """Random DAGs over "x", listed in a shuffled (not topological) order, and which of
    three backends takes each node."""
    n = draw(st.integers(1, 25))
    nodes = []
    for k in range(n):
        reads = draw(st.lists(st.integers(-1, k - 1), min_size=1, max_size=3))
        nodes.append(Node(f"n{k}", "Relu", "", ["x" if r < 0 else f"v{r}" for r in reads], [f"v{k}"]))
    nodes = draw(st.permutations(nodes))
    owner = {nd.name: draw(st.sampled_from("abc")) for nd in nodes}
    return nodes, owner


@settings(max_examples=60, deadline=None)
@given(dags())
def test_orders_are_the_earliest_ready_ones(case):
    nodes, owner = case
    order = topological(nodes, {"x"})
    assert order == earliest_ready_order(nodes, {"x"})
    backends = [Named(b, {k for k, v in owner.items() if v == b}) for b in "abc"]
    graph = Graph(order, {}, [], [], 17)
    got = [(p.backend.name, [n.name for n in p.nodes]) for p in partition(graph, backends)]
    assert got == grouped_partitions(order, owner)
