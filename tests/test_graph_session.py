"""qkernels.graph.Session: loading, robustness (every bad model or call a clear
exception), partitioning among backends with a toy accelerator, thread safety."""
import os
import threading
from contextlib import nullcontext

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from qkernels.graph import Backend, ModelError, RunError, Session, UnsupportedError  # noqa: E402


def mlp(opset=13, extra_nodes=(), name="mlp"):
    """x (2, 4) -> MatMul w1 -> Add b -> Relu -> MatMul w2 -> Identity -> y (2, 3)."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 5)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "b"),
             numpy_helper.from_array(rng.standard_normal((5, 3)).astype(np.float32), "w2")]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
             helper.make_node("Add", ["h", "b"], ["hb"], name="add"),
             helper.make_node("Relu", ["hb"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w2"], ["m2"], name="mm2"),
             helper.make_node("Identity", ["m2"], ["y"], name="id"), *extra_nodes]
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def reference_mlp(model, x):
    w = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return np.maximum(x @ w["w1"] + w["b"], 0) @ w["w2"]


X = np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)


def test_runs_like_onnxruntime_and_describes_itself(tmp_path):
    model = mlp()
    want = reference_mlp(model, X)
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    for src in (model, model.SerializeToString(), str(path), path):
        (y,) = Session(src).run(None, {"x": X})
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
    s = Session(model)
    assert [(i.name, i.shape, i.dtype) for i in s.get_inputs()] == [("x", (2, 4), np.float32)]
    assert s.get_outputs()[0].name == "y" and s.get_outputs()[0].type == "tensor(float32)"
    assert s.run(["y"], {"x": X})[0].shape == (2, 3)
    assert "partition" in s.explain()


def test_constant_subgraphs_are_folded_at_load():
    extra = [helper.make_node("Relu", ["w2"], ["w2r"], name="fold_me")]
    model = mlp(extra_nodes=extra)
    model.graph.node[3].input[1] = "w2r"      # mm2 now reads relu(w2): constant, folded
    s = Session(model)
    assert "fold_me" not in [n.name for n in s.graph.nodes]
    w = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    want = np.maximum(X @ w["w1"] + w["b"], 0) @ np.maximum(w["w2"], 0)
    np.testing.assert_allclose(s.run(None, {"x": X})[0], want, rtol=1e-5, atol=1e-6)


class ToyAccelerator(Backend):
    """Takes MatMul only, and counts what it runs."""
    name = "toy"

    def __init__(self):
        self.calls = 0

    def supports(self, node, graph):
        return node.op_type == "MatMul"

    def compile(self, nodes, graph):
        def run(values):
            self.calls += 1
            out = {}
            for n in nodes:
                out[n.outputs[0]] = np.matmul(values[n.inputs[0]] if n.inputs[0] in values else out[n.inputs[0]],
                                              values[n.inputs[1]])
            return out
        return run


def test_accelerator_takes_its_nodes_and_the_rest_falls_back_to_cpu():
    toy = ToyAccelerator()
    s = Session(mlp(), backends=[toy])
    assert s.partitions == [("toy", ["mm1"]), ("cpu", ["add", "relu"]), ("toy", ["mm2"]), ("cpu", ["id"])]
    np.testing.assert_allclose(s.run(None, {"x": X})[0], reference_mlp(mlp(), X), rtol=1e-5, atol=1e-6)
    assert toy.calls == 2
    s2 = Session(mlp(), backends=["reference"])
    assert {b for b, _ in s2.partitions} == {"reference"}


def test_partitions_are_few_when_independent_nodes_allow():
    """Two independent MatMul branches: the toy takes both in one partition."""
    rng = np.random.default_rng(2)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 4)).astype(np.float32), n) for n in ("wa", "wb")]
    nodes = [helper.make_node("MatMul", ["x", "wa"], ["a"], name="ma"),
             helper.make_node("Relu", ["a"], ["ra"], name="ra"),
             helper.make_node("MatMul", ["x", "wb"], ["b"], name="mb"),
             helper.make_node("Add", ["ra", "b"], ["y"], name="add")]
    g = helper.make_graph(nodes, "branches", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], inits)
    s = Session(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), backends=[ToyAccelerator()])
    assert s.partitions == [("toy", ["ma", "mb"]), ("cpu", ["ra", "add"])]


def test_older_opsets_and_minus_one_dims_load_as_ort_reads_them():
    """Exports as people have them: opset 11 converted at load (explain() says so), a
    -1 dim read as dynamic; results equal the opset-13 model's."""
    x = np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)
    want = Session(mlp()).run(None, {"x": x})[0]
    old = mlp(opset=11)
    old.graph.input[0].type.tensor_type.shape.dim[0].dim_value = -1
    s = Session(old)
    assert "converted at load from opset 11 to 13" in s.explain()
    assert s.get_inputs()[0].shape == (None, 4)
    np.testing.assert_array_equal(s.run(None, {"x": x})[0], want)
    np.testing.assert_allclose(s.run(None, {"x": x[:1]})[0], want[:1], rtol=1e-6, atol=1e-6)   # GEMV vs GEMM
    assert old.opset_import[0].version == 11            # the caller's model is left as it was
    bad = mlp()
    bad.graph.input[0].type.tensor_type.shape.dim[0].dim_value = -2
    with pytest.raises(ModelError, match="negative"):
        Session(bad)


def test_bad_models_raise_model_errors(tmp_path):
    good = mlp().SerializeToString()
    with pytest.raises(ModelError, match="protobuf|not a valid"):
        Session(b"this is not a model")
    with pytest.raises(ModelError):
        Session(good[: len(good) // 2])                       # truncated
    with pytest.raises(ModelError, match="cannot read"):
        Session(str(tmp_path / "missing.onnx"))
    no_default = mlp()
    no_default.opset_import[0].domain = "com.example"
    with pytest.raises(ModelError, match="opset"):
        Session(no_default)
    cyc = mlp()
    cyc.graph.node[0].input[0] = "y"                           # mm1 reads the output: a cycle
    with pytest.raises(ModelError, match="cycle"):
        Session(cyc)
    dangling = mlp()
    dangling.graph.node[1].input[0] = "nowhere"
    with pytest.raises(ModelError, match="nowhere"):
        Session(dangling)
    huge = mlp()
    huge.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1 << 40
    with pytest.raises(ModelError, match="too large"):
        Session(huge)
    with pytest.raises(TypeError):
        Session(12345)


def test_unsupported_nodes_are_all_listed_at_load():
    extra = [helper.make_node("NoSuchOp", ["x"], ["u1"], name="bad1"),
             helper.make_node("AlsoMissing", ["u1"], ["u2"], name="bad2", domain="com.example")]
    model = mlp(extra_nodes=extra)
    model.graph.output.append(helper.make_tensor_value_info("u2", TensorProto.FLOAT, None))
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    with pytest.raises(UnsupportedError) as err:
        Session(model)
    assert "bad1" in str(err.value) and "bad2" in str(err.value) and len(err.value.nodes) == 2


def test_external_data_outside_the_model_folder_is_refused(tmp_path):
    model = mlp()
    w = model.graph.initializer[0]
    inside = tmp_path / "model"
    inside.mkdir()
    (tmp_path / "secret.bin").write_bytes(numpy_helper.to_array(w).tobytes())
    w.ClearField("float_data")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    entry = w.external_data.add()
    entry.key, entry.value = "location", "../secret.bin"
    onnx.save(model, inside / "m.onnx")
    with pytest.raises(ModelError, match="outside"):
        Session(str(inside / "m.onnx"))
    os.replace(tmp_path / "secret.bin", inside / "w1.bin")   # the same file inside the folder loads
    entry.value = "w1.bin"
    onnx.save(model, inside / "m.onnx")
    np.testing.assert_allclose(Session(str(inside / "m.onnx")).run(None, {"x": X})[0], reference_mlp(mlp(), X),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ModelError, match="external"):
        Session(model)                                        # no folder to look in


def test_bad_runs_raise_run_errors():
    s = Session(mlp())
    with pytest.raises(RunError, match="missing"):
        s.run(None, {})
    with pytest.raises(RunError, match="unknown input"):
        s.run(None, {"x": X, "z": X})
    with pytest.raises(RunError, match="float32"):
        s.run(None, {"x": X.astype(np.float64)})
    with pytest.raises(RunError, match="shape"):
        s.run(None, {"x": np.zeros((3, 4), np.float32)})
    with pytest.raises(RunError, match="unknown output"):
        s.run(["nope"], {"x": X})
    with pytest.raises(RunError, match="mapping"):
        s.run(None, [X])


def test_sessions_run_from_several_threads():
    s = Session(mlp())
    rng = np.random.default_rng(4)
    xs = [rng.standard_normal((2, 4)).astype(np.float32) for _ in range(16)]
    want = [reference_mlp(mlp(), x) for x in xs]
    got = [None] * len(xs)

    def work(k):
        for _ in range(20):
            got[k] = s.run(None, {"x": xs[k]})[0]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_cli_run_explains_and_runs(tmp_path, capsys):
    from qkernels.__main__ import main
    path = tmp_path / "m.onnx"
    onnx.save(mlp(), path)
    np.save(tmp_path / "x.npy", X)
    assert main(["run", str(path), "--explain"]) == 0
    assert "partition" in capsys.readouterr().out
    assert main(["run", str(path), "--input", f"x={tmp_path / 'x.npy'}", "--output-dir", str(tmp_path / "out")]) == 0
    assert "y: float32 (2, 3)" in capsys.readouterr().out
    np.testing.assert_allclose(np.load(tmp_path / "out" / "y.npy"), reference_mlp(mlp(), X), rtol=1e-5, atol=1e-6)
    assert main(["run", str(path), "--input", f"x={tmp_path / 'missing.npy'}"]) == 2
    np.save(tmp_path / "bad.npy", X.astype(np.float64))
    assert main(["run", str(path), "--input", f"x={tmp_path / 'bad.npy'}"]) == 1
    assert "float32" in capsys.readouterr().err


def test_third_party_backends_register_through_entry_points(monkeypatch):
    """A package declaring [project.entry-points."qkernels.backends"] toy = "pkg:Factory"
    is found by name; what it makes must be a Backend."""
    import importlib.metadata as md

    from qkernels.graph import available_backends, backend

    class EP:
        def __init__(self, name, target):
            self.name, self._target = name, target

        def load(self):
            return self._target

    eps = [EP("toy-ep", ToyAccelerator), EP("not-a-backend", object)]
    monkeypatch.setattr(md, "entry_points", lambda group=None: eps if group == "qkernels.backends" else [])
    monkeypatch.setattr(backend, "_ENTRY_POINTS_LOADED", False)
    monkeypatch.setattr(backend, "_REGISTRY", dict(backend._REGISTRY))
    assert "toy-ep" in available_backends()
    s = Session(mlp(), backends=["toy-ep"])
    assert s.partitions[0][0] == "toy"
    with pytest.raises(TypeError, match="not a qkernels.graph.Backend"):
        Session(mlp(), backends=["not-a-backend"])
    with pytest.raises(ValueError, match="unknown backend"):
        Session(mlp(), backends=["nope"])


class ThreadCountProbe(ToyAccelerator):
    """The toy accelerator, recording the thread count its kernels would use."""
    name = "probe"

    def compile(self, nodes, graph):
        run = super().compile(nodes, graph)

        def probe(values):
            import qkernels
            self.seen.append(qkernels.get_num_threads())
            return run(values)
        return probe


def test_a_sessions_thread_count_applies_to_its_own_calls_and_never_to_the_global_one():
    """8 Python threads run Session(num_threads=1) at once while the process-wide count
    is 2 (issue 12, point 8): the session's calls use 1, the global count stays 2, and a
    thread-local count set in one thread does not leak into another."""
    import qkernels
    saved = qkernels.get_num_threads()
    qkernels.set_num_threads(2)
    try:
        probe = ThreadCountProbe()
        probe.seen = []
        s = Session(mlp(), backends=[probe], num_threads=1)
        barrier = threading.Barrier(8)
        errors = []

        def work(k):
            barrier.wait()
            with qkernels.use_num_threads(3) if k == 0 else nullcontext():
                for _ in range(30):
                    np.testing.assert_allclose(s.run(None, {"x": X})[0], reference_mlp(mlp(), X), rtol=1e-5,
                                               atol=1e-6)
                    want = 3 if k == 0 else 2          # outside the run: this thread's own setting
                    if qkernels.get_num_threads() != want:
                        errors.append((k, qkernels.get_num_threads()))

        threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert qkernels.get_num_threads() == 2
        assert probe.seen and set(probe.seen) == {1}
        with pytest.raises(ValueError, match="num_threads"):
            Session(mlp(), num_threads=2**31)
    finally:
        qkernels.set_num_threads(saved)


# ------------------------------------------------------------------ introspection (how nodes run, profile)

def test_explain_says_which_nodes_run_native_numpy_or_reference():
    from qkernels.demo import shipped_data
    from qkernels.quant import quantize_model
    model, data = shipped_data()
    calib = data["calib_images"][:64, None].astype(np.float32) / 16
    q = Session(quantize_model(model, {"input": calib}, method="minmax", progress=False))
    f = Session(model)
    placements = {n.key: q.placement(n) for n in q.graph.nodes}
    assert placements["QLinearConv"] == "native" and placements["QuantizeLinear"] == "native"
    assert {f.placement(n) for n in f.graph.nodes if n.op_type in ("Conv", "FusedConv")} == {"native"}   # fp32 kernels
    text = q.explain()
    native = next(line for line in text.splitlines() if line.strip().startswith("native"))
    assert "QLinearConv x2" in native
    assert any(line.strip().startswith("reference") for line in text.splitlines())
    listed = q.explain(nodes=True).splitlines()
    for n in q.graph.nodes:
        assert any(line.split() == [n.name, n.key, q.placement(n)] for line in listed), n.name
    r = Session(model, backends=["reference"])
    assert {r.placement(n) for n in r.graph.nodes} == {"reference"}


def test_explain_after_a_run_says_how_the_compiled_plan_runs_each_node():
    """Before a run explain() says how each backend plans its nodes; after one, how the
    compiled plan runs them: a node the cpu backend leaves to the reference operator but
    the plan binds for its shapes (MaxPool: the native loop; Gather of constant indices:
    numpy's take) is said so, a Reshape is a view; the profile agrees."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    nodes = [helper.make_node("MaxPool", ["x"], ["m"], kernel_shape=[2, 2]),
             helper.make_node("Gather", ["m", "idx"], ["g"], axis=1),
             helper.make_node("Reshape", ["g", "shape"], ["y"])]
    inits = [numpy_helper.from_array(np.array([1, 0], np.int64), "idx"),
             numpy_helper.from_array(np.array([1, -1], np.int64), "shape")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    s = Session(model, num_threads=1)
    before = {n.op_type: s.placement(n) for n in s.graph.nodes}
    assert before["MaxPool"] == "reference" and before["Gather"] == "reference"
    x = np.random.default_rng(0).standard_normal((1, 3, 6, 6)).astype(np.float32)
    for _ in range(3):         # (a plan is compiled on the second run of a signature)
        s.run(None, {"x": x}, profile=True)
    after = {n.op_type: s.placement(n) for n in s.graph.nodes}
    assert after == {"MaxPool": "native", "Gather": "numpy", "Reshape": "view"}, after
    assert {r["op"]: r["placement"] for r in s.last_profile} == after
    assert "native       1: MaxPool" in s.explain()


def test_profile_times_every_node_and_a_foreign_partition_as_one_row():
    s = Session(mlp())
    with pytest.raises(ValueError, match="profile=True"):
        s.format_profile()
    y = s.run(None, {"x": X})[0]
    assert s.last_profile is None                                       # only when asked
    np.testing.assert_array_equal(s.run(None, {"x": X}, profile=True)[0], y)
    rows = s.last_profile
    assert [r["node"] for r in rows] == [n.name for n in s.graph.nodes]
    assert all(r["seconds"] >= 0 and r["backend"] == "cpu" for r in rows)
    text = s.format_profile()
    assert text.startswith(f"profile: {len(rows)} node(s)") and "MatMul" in text
    toy = ToyAccelerator()
    t = Session(mlp(), backends=[toy])
    t.run(None, {"x": X}, profile=True)
    kinds = [(r["backend"], r["op"]) for r in t.last_profile]
    assert kinds.count(("toy", "(partition)")) == 2 and ("cpu", "Add") in kinds
    assert {r["placement"] for r in t.last_profile if r["backend"] == "toy"} == {"backend"}


def test_run_profile_from_the_command_line(tmp_path, capsys):
    from qkernels.__main__ import main
    import onnx
    onnx.save(mlp(), tmp_path / "m.onnx")
    np.save(tmp_path / "x.npy", X)
    assert main(["run", str(tmp_path / "m.onnx"), "--input", f"x={tmp_path / 'x.npy'}", "--profile"]) == 0
    out = capsys.readouterr().out
    assert "profile: 4 node(s)" in out and "slowest nodes" in out   # (MatMul + bias Add: one MatMulBias)
