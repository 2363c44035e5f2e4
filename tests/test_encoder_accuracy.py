"""bench/encoder_accuracy.py on a tiny encoder in the trained model's place (tests never
download): every mode is a row, made and checked or saying why not; the float row agrees
with the reference; no model means a clear skip, no table."""
import pytest

from qkernels.bench import encoder, encoder_accuracy, minilm

pytest.importorskip("onnxruntime")


def test_every_mode_is_a_row_with_figures_or_a_reason(monkeypatch):
    # minilm.inputs draws ids up to 29000: a tiny encoder of the real vocabulary size
    monkeypatch.setattr(minilm, "model", lambda: encoder.bert_encoder(1, 32, 2, vocab=30522, seed=3))
    rep = encoder_accuracy.run(sentences=2, calibration=2, rounds=1, min_time=0.001, progress=lambda s: None)
    rows = {r["mode"]: r for r in rep["rows"]}
    assert list(rows) == ["float", "fp16", "ort dynamic", "ort static QDQ", "qk static", "qk dynamic"]
    for t in encoder_accuracy.TOKENS:
        for lib in ("qkernels", "ort"):
            assert rows["float"][f"{lib}_{t}"]["min_cosine"] > 1 - 1e-6
            assert 0.5 < rows["ort dynamic"][f"{lib}_{t}"]["min_cosine"] <= 1 + 1e-9
        lat = rows["float"][f"latency_{t}"]
        assert lat["qkernels"]["lo"] <= lat["qkernels"]["ms"] <= lat["qkernels"]["hi"] and lat["ort"]["ms"] > 0
        assert lat["ratio"]["lo"] <= lat["ratio"]["median"] <= lat["ratio"]["hi"]
    for r in rows.values():   # a row has figures or says why not
        assert r.get("error") or r.get("bytes", 0) > 0
    md = encoder_accuracy.format_markdown(rep)
    assert md.count("\n| ") == len(rows) + 1 and "| float | bench.minilm | 1.00000 / 1.00000 |" in md


def test_no_model_is_a_clear_skip(monkeypatch):
    def missing():
        raise OSError("no network")

    said = []
    monkeypatch.setattr(minilm, "model", missing)
    assert encoder_accuracy.run(sentences=1, progress=said.append) is None
    assert said and said[0].startswith("SKIPPED: all-MiniLM-L6-v2 is not cached") and "no network" in said[0]
