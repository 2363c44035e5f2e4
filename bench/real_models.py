"""Trained models as people have them, for the quantization study and the model suite:
the three PaddleOCR models (PP-OCR mobile v2.0 text-direction classifier, PP-OCRv4 text
recogniser and detector) that the ``rapidocr-onnxruntime`` wheel on PyPI ships, exported
from PaddlePaddle with paddle2onnx (opset 11/12, weights in ``Constant`` nodes, BN not
folded, ``-1`` and symbolic input dims) -- not made for us.

* :func:`fetch` downloads the wheel once with pip (``pip download --no-deps``) into a
  cache folder and unpacks the three ``.onnx`` files (about 16 MB); nothing here runs in
  CI, and nothing in the library downloads anything;
* :func:`samples` makes their inputs: text lines drawn with Pillow (random words, digits
  and punctuation in DejaVu Sans, Serif or Mono where the system has them, else Pillow's
  default font, at several sizes, grey levels, noise, half of the
  classifier's lines turned 180 degrees), preprocessed as rapidocr does
  (``(x / 255 - 0.5) / 0.5``, height 48, right-padded with zeros; the detector gets pages
  of lines, sides multiples of 32);
* :func:`ctc_decode` reads the recogniser's output as rapidocr does (greedy CTC: argmax
  per step, repeats merged, blank 0 dropped), so int8 and float can be compared on what a
  user sees.

Pillow is needed to draw (``pip install pillow``); it is a dependency of this script only.
"""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

WHEEL = "rapidocr-onnxruntime==1.4.4"
MODELS = {
    "classifier": "ch_ppocr_mobile_v2.0_cls_infer.onnx",
    "recogniser": "ch_PP-OCRv4_rec_infer.onnx",
    "detector": "ch_PP-OCRv4_det_infer.onnx",
}
#: Input size (height, width) per model, as rapidocr feeds them.
SHAPES = {"classifier": (48, 192), "recogniser": (48, 320), "detector": (320, 320)}
CACHE = Path(os.environ.get("QKERNELS_MODEL_CACHE", Path.home() / ".cache" / "qkernels" / "models"))

_WORDS = ("the quick brown fox jumps over lazy dog invoice total amount date paid order number street "
          "city name phone email account balance receipt tax price item quantity open close north "
          "south river station market model kernel int8 float edge device").split()


def cached(model: str, cache: Path = CACHE) -> bool:
    """Whether ``model``'s file is in the cache (never downloads)."""
    return (Path(cache) / MODELS[model]).exists()


def fetch(cache: Path = CACHE) -> dict[str, Path]:
    """Paths of the three models, downloading and unpacking the wheel on first use."""
    return fetch_wheel(WHEEL, "rapidocr_onnxruntime/models", MODELS, cache)


def fetch_wheel(spec: str, folder: str, files: dict[str, str], cache: Path = CACHE) -> dict[str, Path]:
    """``files`` (key -> file name in the wheel's ``folder``) of the PyPI wheel ``spec``,
    as paths in ``cache``: downloaded once with pip and unpacked there."""
    cache = Path(cache)
    paths = {k: cache / v for k, v in files.items()}
    if all(p.exists() for p in paths.values()):
        return paths
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache), spec], check=True)
    wheel = next(cache.glob(spec.split("==")[0].replace("-", "_") + "-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        for key, name in files.items():
            paths[key].write_bytes(z.read(f"{folder}/{name}"))
    return paths


def _text(rng) -> str:
    words = [str(rng.choice(_WORDS)) for _ in range(rng.integers(1, 5))]
    if rng.random() < 0.5:
        words.insert(rng.integers(0, len(words) + 1), str(rng.integers(0, 100000)))
    if rng.random() < 0.3:
        words[-1] += str(rng.choice(list(".,:;!?")))
    text = " ".join(words)
    return text.upper() if rng.random() < 0.2 else text


#: fonts drawn with, where the system has them (else Pillow's own default font)
FONTS = ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
         "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf")


def _font(rng, size: int):
    from PIL import ImageFont
    found = [f for f in FONTS if os.path.exists(f)]
    if found:
        return ImageFont.truetype(found[int(rng.integers(0, len(found)))], size)
    return ImageFont.load_default(size=size)


def _line(rng, text: str, height: int):
    """A grey image of one text line (numpy uint8, 3 channels), ``height`` rows."""
    from PIL import Image, ImageDraw
    size = int(rng.integers(height // 2, height - 6))
    font = _font(rng, size)
    left, top, right, bottom = font.getbbox(text)
    w, h = right - left + 2 * int(rng.integers(2, 10)), height
    bg, fg = int(rng.integers(170, 256)), int(rng.integers(0, 90))
    img = Image.new("RGB", (max(w, 8), h), (bg, bg, bg))
    ImageDraw.Draw(img).text(((w - (right - left)) // 2 - left, (h - (bottom - top)) // 2 - top), text,
                             font=font, fill=(fg, fg, fg))
    a = np.asarray(img, np.float32)
    a += rng.normal(0, rng.uniform(0, 12), a.shape[:2])[..., None]
    return np.clip(a, 0, 255).astype(np.uint8), text


def _normalize(img: np.ndarray) -> np.ndarray:
    return ((img.astype(np.float32) / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)


def _fit(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """rapidocr's resize_norm_img: height fixed, width by aspect (at most ``width``),
    normalised, right-padded with zeros."""
    from PIL import Image
    h, w = img.shape[:2]
    new_w = min(width, int(np.ceil(height * w / h)))
    resized = np.asarray(Image.fromarray(img).resize((new_w, height), Image.BILINEAR))
    out = np.zeros((3, height, width), np.float32)
    out[:, :, :new_w] = _normalize(resized)
    return out


def _page(rng, height: int, width: int) -> np.ndarray:
    bg = int(rng.integers(180, 256))
    page = np.full((height, width, 3), bg, np.uint8)
    y = int(rng.integers(0, 16))
    while y < height - 24:
        line, _ = _line(rng, _text(rng), int(rng.integers(20, 40)))
        h, w = line.shape[:2]
        if y + h > height:
            break
        x = int(rng.integers(0, max(1, width // 4)))
        w = min(w, width - x)
        page[y:y + h, x:x + w] = line[:, :w]
        y += h + int(rng.integers(4, 30))
    return _normalize(page)


def samples(model: str, n: int, seed: int = 0) -> np.ndarray:
    """``n`` preprocessed inputs of ``model`` (float32 NCHW), reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    height, width = SHAPES[model]
    out = np.empty((n, 3, height, width), np.float32)
    for i in range(n):
        if model == "detector":
            out[i] = _page(rng, height, width)
            continue
        img, _ = _line(rng, _text(rng), 48)
        if model == "classifier" and rng.random() < 0.5:
            img = img[::-1, ::-1].copy()
        out[i] = _fit(img, height, width)
    return out


def ctc_decode(probs: np.ndarray) -> list[tuple[int, ...]]:
    """Greedy CTC decoding of ``(batch, steps, classes)`` scores: per item the class
    indices with repeats merged and blanks (class 0) dropped."""
    best = np.asarray(probs).argmax(-1)
    out = []
    for seq in best:
        keep = np.ones(len(seq), bool)
        keep[1:] = seq[1:] != seq[:-1]
        out.append(tuple(int(c) for c in seq[keep & (seq != 0)]))
    return out


if __name__ == "__main__":   # python -m qkernels.bench.real_models: download the models once
    for key, path in fetch().items():
        print(f"{key}: {path}")
