"""The command line refuses misuse with one line on stderr and a nonzero exit status, never
a traceback, and checks every output path before the work (issue 12, point 5)."""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import zipfile

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from qkernels.__main__ import main


def _model(outputs=("y",), batch="N"):
    """x (batch, 4) -> MatMul mm1 -> Relu relu -> MatMul mm2 -> each of ``outputs`` (Identity)."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 5)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal((5, 3)).astype(np.float32), "w2")]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w2"], ["m"], name="mm2")]
    nodes += [helper.make_node("Identity", ["m"], [o], name=f"id{k}") for k, o in enumerate(outputs)]
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4])],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, [batch, 3]) for o in outputs], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def _flip(data: bytes, start: int, stop: int) -> bytes:
    b = bytearray(data)
    for i in range(start, stop):
        b[i] ^= 0x5A
    return bytes(b)


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    """A folder of inputs to misuse: models, calibration files (good and damaged), npy files."""
    d = tmp_path_factory.mktemp("cli")
    onnx.save(_model(), d / "m.onnx")
    onnx.save(_model(batch=2), d / "m2.onnx")
    x = np.random.default_rng(1).standard_normal((16, 4)).astype(np.float32)
    np.save(d / "x.npy", x[:2])
    np.save(d / "x64.npy", x[:2].astype(np.float64))
    np.save(d / "x3.npy", x[:3])
    np.savez(d / "good.npz", x=x)
    good = (d / "good.npz").read_bytes()
    (d / "trunc.npz").write_bytes(good[:len(good) // 2])
    (d / "badcrc.npz").write_bytes(_flip(good, 200, 201))              # a data byte of member x.npy
    with zipfile.ZipFile(d / "notnpy.npz", "w") as z:
        z.writestr("x.npy", b"plain text, not an array")
    buf = io.BytesIO()
    np.savez_compressed(buf, x=x)
    (d / "badzlib.npz").write_bytes(_flip(buf.getvalue(), 60, 160))   # inside the deflate stream
    np.savez(d / "scalar.npz", x=np.float32(1))
    np.savez(d / "wrongname.npz", y=x)
    np.savez(d / "wrongshape.npz", x=x[:, :3])
    np.savez(d / "nan.npz", x=np.full((4, 4), np.nan, np.float32))
    (d / "empty").write_bytes(b"")
    (d / "text").write_text("hello, not a model\n")
    (d / "file").write_text("x")
    (d / "folder").mkdir()
    (d / "out").mkdir()
    (d / "calibdir").mkdir()
    (d / "calibdir" / "a.npz").write_bytes(_flip(buf.getvalue(), 60, 160))
    return d


def cli(argv, capsys):
    """(exit status, captured stdout and stderr) of ``qkernels argv`` run in this process."""
    try:
        rc = main(argv)
    except SystemExit as exc:    # argparse's usage errors
        rc = exc.code
    return rc, capsys.readouterr()


Q = "quantize {d}/m.onnx {d}/out/q.onnx --quiet"
R = "run {d}/m2.onnx"
B = "bench --quick --shapes square-64"   # the smallest run, should a misuse ever be accepted
MISUSES = [   # (command line, what the message must name)
    (Q + " --calib {d}/trunc.npz", "trunc.npz"),
    (Q + " --calib {d}/badcrc.npz", "member 'x' of calibration data '{d}/badcrc.npz'"),
    (Q + " --calib {d}/notnpy.npz", "member 'x' of calibration data '{d}/notnpy.npz' is not a .npy array"),
    (Q + " --calib {d}/badzlib.npz", "member 'x' of calibration data '{d}/badzlib.npz'"),
    (Q + " --calib {d}/calibdir", "calibdir/a.npz"),
    (Q + " --calib {d}/empty", "empty"),
    (Q + " --calib {d}/missing.npz", "missing.npz"),
    (Q + " --calib {d}/folder", "holds no .npz"),
    (Q + " --calib {d}/scalar.npz", "'x' is a scalar"),
    (Q + " --calib {d}/wrongname.npz", "unknown input"),
    (Q + " --calib {d}/wrongshape.npz", "shape"),
    (Q + " --calib {d}/nan.npz", "NaN"),
    (Q + " --calib {d}/x64.npy", "float32"),
    (Q, "needs calibration data"),
    (Q + " --calib {d}/good.npz --method nope", "'nope'"),
    (Q + " --calib {d}/good.npz --keep-float -1", "--keep-float"),
    (Q + " --calib {d}/good.npz --min-sqnr-db inf", "--min-sqnr-db"),
    (Q + " --calib {d}/good.npz --target nope", "--target"),
    (Q + " --calib {d}/good.npz --exclude mm3", "no node named 'mm3'; did you mean 'mm2', 'mm1'?"),
    (Q + " --calib {d}/good.npz --exclude zzz", "no node named 'zzz'; the nodes are 'mm1', 'relu'"),
    (Q + " --calib {d}/good.npz --target fp16 --exclude mm9", "'mm9'"),
    (Q + " --calib {d}/good.npz --report {d}/no/r.json", "cannot write '{d}/no/r.json'"),
    (Q + " --calib {d}/good.npz --report {d}/folder", "cannot write '{d}/folder'"),
    (Q + " --calib {d}/good.npz --plot {d}/no/p.png", "cannot write '{d}/no/p.png'"),
    ("quantize {d}/m.onnx {d}/folder --calib {d}/good.npz", "cannot write '{d}/folder'"),
    ("quantize {d}/m.onnx {d}/file/q.onnx --calib {d}/good.npz", "cannot write '{d}/file/q.onnx'"),
    ("quantize {d}/missing.onnx {d}/out/q.onnx --calib {d}/good.npz", "missing.onnx"),
    ("quantize {d}/folder {d}/out/q.onnx --calib {d}/good.npz", "folder"),
    ("quantize {d}/empty {d}/out/q.onnx --calib {d}/good.npz", "not a valid ONNX model"),
    ("quantize {d}/good.npz {d}/out/q.onnx --calib {d}/good.npz", "not a valid ONNX model"),
    (R + " --input x={d}/x.npy --output-dir {d}/file", "cannot write '{d}/file': it exists and is not a folder"),
    (R + " --input x={d}/x.npy --output-dir {d}/file/sub", "cannot write '{d}/file/sub'"),
    (R + " --threads 2147483648", "--threads"),
    (R + " --threads 0", "--threads"),
    (R + " --threads -1", "--threads"),
    (R + " --threads two", "--threads"),
    ("run {d}/missing.onnx", "missing.onnx"),
    ("run {d}/folder", "folder"),
    ("run {d}/empty", "not a valid ONNX model"),
    ("run {d}/text", "not a valid ONNX model"),
    (R + " --input x={d}/x64.npy", "float32"),
    (R + " --input x={d}/x3.npy", "shape"),
    (R + " --input nope={d}/x.npy", "unknown input"),
    (R + " --input x", "NAME=FILE.npy"),
    (R + " --input x={d}/missing.npy", "missing.npy"),
    (R + " --input x={d}/folder", "folder"),
    (R + " --input x={d}/good.npz", "--input takes one .npy array"),
    (R + " --input x={d}/trunc.npz", "trunc.npz"),
    (R + " --input x={d}/empty", "empty"),
    (R + " --input x={d}/x.npy --input x={d}/x.npy", "given twice"),
    (R + " --input x={d}/x.npy --backend nope", "'nope'"),
    ("demo --no-ort --quiet --out {d}/no/d.onnx", "cannot write '{d}/no/d.onnx'"),
    ("demo --no-ort --quiet --out {d}/folder", "cannot write '{d}/folder'"),
    ("demo --no-ort --quiet --threads 0 --out {d}/out/d.onnx", "--threads"),
    (B + " --shapes nope", "nope"),
    (B + " --suite conv --shapes nope", "nope"),
    (B + " --suite nope", "--suite"),
    (B + " --threads 0", "--threads"),
    (B + " --threads 2147483648", "--threads"),
    (B + " --rounds 0", "--rounds"),
    (B + " --wait-idle -1", "--wait-idle"),
    (B + " --wait-idle nan", "--wait-idle"),
    (B + " --isa nope", "--isa"),
    (B + " --json {d}/no/b.json", "cannot write '{d}/no/b.json'"),
    (B + " --json {d}/folder", "cannot write '{d}/folder'"),
    (B + " --plot {d}/no/b.png", "cannot write '{d}/no/b.png'"),
    (B + " --compare {d}/missing.json", "missing.json"),
    (B + " --compare {d}/m.onnx", "m.onnx"),
    ("", "command"),
    ("nope", "'nope'"),
    ("info --bogus", "--bogus"),
]


@pytest.mark.parametrize("line, needle", MISUSES, ids=[line.replace("{d}/", "") for line, _ in MISUSES])
def test_misuse_is_one_line_and_a_nonzero_exit(d, capsys, line, needle):
    rc, cap = cli([a.format(d=d) for a in line.split()], capsys)
    err = cap.err
    assert rc not in (0, None)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and len(lines[0]) < 400, err
    assert lines[0].startswith("qkernels")
    assert needle.format(d=d) in lines[0]


def test_outputs_are_checked_before_the_work(d, capsys):
    """--report into a missing folder used to fail after the model was written."""
    out = d / "out" / "early.onnx"
    rc, cap = cli(["quantize", str(d / "m.onnx"), str(out), "--quiet", "--calib", str(d / "good.npz"),
                   "--report", str(d / "no" / "r.json")], capsys)
    assert rc == 2 and "cannot write" in cap.err
    assert not out.exists()
    # the check leaves no trace: nothing created, an existing file keeps its content
    (d / "keep.json").write_text("old")
    assert cli(["quantize", str(d / "m.onnx"), str(out), "--calib", str(d / "missing.npz"),
                "--report", str(d / "keep.json")], capsys)[0] == 1
    assert not out.exists() and (d / "keep.json").read_text() == "old"


def test_output_names_stay_inside_the_output_dir(d, tmp_path, capsys):
    """Output names with "/" (TensorFlow's "scope/op:0"), ".." and control characters become
    plain file names inside --output-dir ("_" for each such character)."""
    names = ("scope/y:0", "../up", "../../x\x01y", "..")
    onnx.save(_model(outputs=names), tmp_path / "m.onnx")
    out = tmp_path / "a" / "out"
    rc, cap = cli(["run", str(tmp_path / "m.onnx"), "--input", f"x={d / 'x.npy'}", "--output-dir", str(out)], capsys)
    assert rc == 0
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.npy"))
    assert files == sorted(f"a/out/{n}" for n in ("scope_y:0.npy", ".._up.npy", ".._.._x_y.npy", "...npy"))
    want = np.maximum(np.load(d / "x.npy") @ numpy_helper.to_array(_model().graph.initializer[0]), 0) \
        @ numpy_helper.to_array(_model().graph.initializer[1])
    for f in files:
        np.testing.assert_allclose(np.load(tmp_path / f), want, rtol=1e-5, atol=1e-6)
    assert "scope/y:0: float32 (2, 3) (saved as scope_y:0.npy)" in cap.out


def test_output_names_that_would_share_a_file_are_refused(d, tmp_path, capsys):
    onnx.save(_model(outputs=("a/b", "a_b")), tmp_path / "m.onnx")
    rc, cap = cli(["run", str(tmp_path / "m.onnx"), "--input", f"x={d / 'x.npy'}", "--output-dir",
                   str(tmp_path / "out")], capsys)
    assert rc == 2 and "'a/b' and 'a_b'" in cap.err and "a_b.npy" in cap.err
    assert not list(tmp_path.rglob("*.npy"))


def test_exclude_names_a_node_in_the_library_too(d):
    from qkernels.quant import quantize_model
    with pytest.raises(ValueError, match=r"no node named 'relu1'; did you mean 'relu'"):
        quantize_model(str(d / "m.onnx"), str(d / "good.npz"), exclude_nodes=["relu1"], progress=False)
    quantize_model(str(d / "m.onnx"), str(d / "good.npz"), exclude_nodes=["relu", "mm1"], progress=False)


@pytest.mark.skipif(shutil.which("qkernels") is None, reason="the qkernels console script is not installed")
@pytest.mark.parametrize("line, needle", [
    ("quantize {d}/m.onnx {d}/out/q.onnx --quiet --calib {d}/badzlib.npz", "badzlib.npz"),
    ("run {d}/m2.onnx --threads 2147483648", "--threads"),
    ("run {d}/m2.onnx --input x={d}/x.npy --output-dir {d}/file", "not a folder"),
])
def test_console_script_reports_in_one_line(d, line, needle):
    r = subprocess.run(["qkernels", *line.format(d=d).split()], capture_output=True, text=True, timeout=120,
                       cwd=d)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr


@pytest.mark.skipif(shutil.which("qkernels") is None, reason="the qkernels console script is not installed")
def test_closed_stdout_ends_quietly():
    """``qkernels info | head -0``: no BrokenPipeError traceback."""
    read, write = os.pipe()
    os.close(read)               # closed before the command starts: its first write fails
    try:
        r = subprocess.run(["qkernels", "info"], stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert r.returncode != 0 and r.stderr == ""


# ------------------------------------------------------------- quantize's options behave

def _quantize(d, capsys, *extra, report=None):
    argv = ["quantize", str(d / "m.onnx"), str(d / "out" / "o.onnx"), "--quiet", "--calib", str(d / "good.npz"),
            *extra]
    if report:
        argv += ["--report", str(report)]
    return cli(argv, capsys)


def test_keep_float_and_min_sqnr_db_from_the_command_line(d, capsys):
    import json
    rep = d / "out" / "kf.json"
    rc, cap = _quantize(d, capsys, "--keep-float", "1", report=rep)
    assert rc == 0, cap.err
    r = json.loads(rep.read_text())
    assert len(r["float_nodes"]) == 1 and r["float_nodes"] == r["accuracy_budget"]["kept_float_by_rank"]
    assert any(line.startswith("keep float 1: ") for line in cap.out.splitlines())
    rc, cap = _quantize(d, capsys, "--min-sqnr-db", "200", report=rep)     # more than int8 can give
    assert rc == 0, cap.err
    r = json.loads(rep.read_text())
    assert r["accuracy_budget"]["min_sqnr_db"] == 200 and sorted(r["float_nodes"]) == ["mm1", "mm2"]
    assert "(at least 200 dB: met)" in cap.out and "output y: SQNR exact dB" in cap.out   # all float: exact


def test_exclude_repeats_and_leaves_the_positionals_alone(d, capsys):
    """--exclude A B model out used to swallow the positionals; now each --exclude takes one name."""
    import json
    rep = d / "out" / "ex.json"
    rc, cap = cli(["quantize", "--exclude", "relu", "--exclude", "mm1", str(d / "m.onnx"), str(d / "out" / "ex.onnx"),
                   "--quiet", "--calib", str(d / "good.npz"), "--report", str(rep)], capsys)
    assert rc == 0, cap.err
    assert json.loads(rep.read_text())["excluded_nodes"] == ["mm1", "relu"]
    rc, cap = _quantize(d, capsys, "--exclude", "relu1")
    assert rc == 1 and "no node named 'relu1'; did you mean 'relu'" in cap.err


@pytest.mark.parametrize("batch_size,batches", [(None, 1), (5, 4), (3, 6), (16, 1), (100, 1)])
def test_batch_size_sets_the_calibration_batches(d, capsys, batch_size, batches):
    """16 calibration samples, fed --batch-size at a time (32 by default)."""
    import json
    rep = d / "out" / f"bs{batch_size}.json"
    rc, cap = _quantize(d, capsys, *(("--batch-size", str(batch_size)) if batch_size else ()), report=rep)
    assert rc == 0, cap.err
    assert json.loads(rep.read_text())["batches"] == batches
    assert _quantize(d, capsys, "--batch-size", "0")[0] == 2      # argparse: expected an integer >= 1


def test_batch_size_is_checked_in_the_library(d):
    from qkernels.quant import quantize_model
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        quantize_model(str(d / "m.onnx"), str(d / "good.npz"), batch_size=0, progress=False)
    with pytest.raises(ValueError, match="batch_size applies to calibration arrays"):
        quantize_model(str(d / "m.onnx"), [{"x": np.zeros((2, 4), np.float32)}], batch_size=4, progress=False)


def test_progress_counts_samples_against_a_known_total(d, capsys):
    from qkernels.quant.data import Batched, _samples, calibration_batches
    assert _samples(str(d / "good.npz")) == 16 and _samples(str(d / "x3.npy")) == 3
    assert _samples({"x": np.zeros((7, 4))}) == 7 and _samples([{"x": np.zeros((2, 4))}] * 3) == 6
    assert _samples(Batched(str(d / "good.npz"), 5)) == 16
    for unknown in (str(d / "trunc.npz"), str(d / "notnpy.npz"), str(d / "calibdir"), iter([])):
        assert _samples(unknown) is None            # damaged or one-shot: no total, the reading reports
    capsys.readouterr()
    got = [len(b["x"]) for b in calibration_batches(Batched({"x": np.zeros((7, 4))}, 3), ["x"], True, "calib")]
    assert got == [3, 3, 1]
    assert "7/7" in capsys.readouterr().err


def test_quantize_measures_only_when_a_report_is_asked_for(d, capsys):
    from qkernels.quant import quantize_model
    rc, cap = _quantize(d, capsys)
    assert rc == 0, cap.err
    lines = cap.out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("quantized 2 layers") and "--report" in lines[0]
    _, report = quantize_model(str(d / "m.onnx"), str(d / "good.npz"), progress=False, return_report=True,
                               measure=False)
    assert report["batches"] is None and report["outputs"] == []
    assert report["tensors"] and all("sqnr_db" not in t for t in report["tensors"])
    _, measured = quantize_model(str(d / "m.onnx"), str(d / "good.npz"), progress=False, return_report=True)
    assert measured["batches"] == 1 and all("sqnr_db" in t for t in measured["tensors"])


def test_help_lists_every_command_and_every_quantize_option_has_help(capsys):
    rc, cap = cli(["--help"], capsys)
    assert rc == 0
    for command in ("info", "bench", "run", "demo", "quantize", "report"):
        assert command in cap.out
    rc, cap = cli(["quantize", "--help"], capsys)
    assert rc == 0
    options = [line.split()[0] for line in cap.out.splitlines() if line.startswith("  --")]
    assert "--batch-size" in options and "--exclude" in options and "--target" in options
    text = " ".join(cap.out.split())
    for opt in options:   # argparse puts the help after the option (same or next line)
        after = text.split(opt, 1)[1].split(" --", 1)[0]
        assert len(after.split()) >= 3, (opt, after)


def test_report_prints_a_summary_and_the_report_command_every_table(d, capsys):
    rep = d / "out" / "sum.json"
    rc, cap = _quantize(d, capsys, report=rep)
    assert rc == 0, cap.err
    out = cap.out.splitlines()
    assert len(out) < 10 and any(line.startswith("output y: SQNR") for line in out)
    assert any(line.startswith("costliest tensors (output SQNR with each alone quantized): ") for line in out)
    assert f"every table: qkernels report {rep}" in out
    rc, cap = cli(["report", str(rep)], capsys)
    assert rc == 0 and "activation" in cap.out and "model output" in cap.out and "layer" in cap.out
    rc, cap = cli(["report", str(d / "text")], capsys)
    assert rc == 1 and cap.err.startswith("qkernels report: cannot read") and len(cap.err.splitlines()) == 1
