"""Train the demo's small CNN on scikit-learn's 8x8 digits and write what the package
ships: qkernels/data/digits_cnn.onnx (float32) and qkernels/data/digits.npz (the held-out
calibration and test splits). Reproducible (fixed seeds); needs scikit-learn and onnx,
neither of which the package needs at run time. Plain numpy training (no torch):

    python scripts/train_digits_cnn.py

Model (NCHW, input (N, 1, 8, 8) = pixels / 16):
    Conv 1->16 3x3 pad 1, ReLU; Conv 16->32 3x3 stride 2 pad 1, ReLU; Flatten; Gemm 512->10.
Data: the UCI optical digits test set as scikit-learn ships it (1,797 images of 8x8, values
0..16; E. Alpaydin and C. Kaynak, UCI Machine Learning Repository, CC BY 4.0). Split with
seed 0: 1,197 train, 200 calibration, 400 test; only calibration and test are shipped.
"""
from __future__ import annotations

import os

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "qkernels", "data")


def im2col(x, k, stride, pad):
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    cols = np.empty((n, c, k, k, oh, ow), x.dtype)
    for i in range(k):
        for j in range(k):
            cols[:, :, i, j] = xp[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
    return cols.transpose(0, 4, 5, 1, 2, 3).reshape(n * oh * ow, c * k * k), (oh, ow)


def col2im(cols, shape, k, stride, pad, ohw):
    n, c, h, w = shape
    oh, ow = ohw
    cols = cols.reshape(n, oh, ow, c, k, k).transpose(0, 3, 4, 5, 1, 2)
    xp = np.zeros((n, c, h + 2 * pad, w + 2 * pad), cols.dtype)
    for i in range(k):
        for j in range(k):
            xp[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += cols[:, :, i, j]
    return xp[:, :, pad:pad + h, pad:pad + w]


LAYERS = [("conv", 1, 16, 1), ("conv", 16, 32, 2)]


def init(rng):
    params = []
    for _, cin, cout, _ in LAYERS:
        params += [rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2 / (cin * 9)), np.zeros(cout)]
    params += [rng.standard_normal((10, 512)) * np.sqrt(1 / 512), np.zeros(10)]
    return params


def forward(params, x, keep=False):
    cache, h = [], x
    for li, (_, cin, cout, stride) in enumerate(LAYERS):
        w, b = params[2 * li], params[2 * li + 1]
        cols, ohw = im2col(h, 3, stride, 1)
        z = cols @ w.reshape(cout, -1).T + b
        a = np.maximum(z, 0)
        cache.append((h.shape, cols, ohw, z))
        h = a.reshape(h.shape[0], *ohw, cout).transpose(0, 3, 1, 2)
    flat = h.reshape(h.shape[0], -1)
    logits = flat @ params[-2].T + params[-1]
    return (logits, cache, flat) if keep else logits


def grads(params, x, y):
    logits, cache, flat = forward(params, x, keep=True)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    loss = -np.log(p[np.arange(len(y)), y] + 1e-12).mean()
    d = p
    d[np.arange(len(y)), y] -= 1
    d /= len(y)
    g = [None] * len(params)
    g[-2], g[-1] = d.T @ flat, d.sum(0)
    dh = (d @ params[-2]).reshape(len(y), 32, 4, 4)
    for li in reversed(range(len(LAYERS))):
        _, cin, cout, stride = LAYERS[li]
        shape, cols, ohw, z = cache[li]
        dz = dh.transpose(0, 2, 3, 1).reshape(-1, cout) * (z > 0)
        g[2 * li] = (dz.T @ cols).reshape(cout, cin, 3, 3)
        g[2 * li + 1] = dz.sum(0)
        dh = col2im(dz @ params[2 * li].reshape(cout, -1), shape, 3, stride, 1, ohw)
    return loss, g


def to_onnx(params):
    from onnx import TensorProto, helper, numpy_helper
    f32 = [np.asarray(p, np.float32) for p in params]
    inits = [numpy_helper.from_array(a, n) for a, n in zip(f32, ["w1", "b1", "w2", "b2", "fc_w", "fc_b"])]
    nodes = [helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1", kernel_shape=[3, 3], pads=[1] * 4),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", kernel_shape=[3, 3], pads=[1] * 4,
                              strides=[2, 2]),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("Flatten", ["r2"], ["f"], name="flatten", axis=1),
             helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "digits_cnn", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                                  ["N", 1, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="qkernels")


def main():
    import onnx
    from sklearn.datasets import load_digits
    d = load_digits()
    images, labels = d.images.astype(np.uint8), d.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(labels))
    train, calib, test = order[:1197], order[1197:1397], order[1397:]
    x = lambda idx: images[idx, None].astype(np.float64) / 16.0   # noqa: E731
    rng = np.random.default_rng(1)
    params = init(rng)
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    step, lr = 0, 3e-3
    for epoch in range(40):
        perm = rng.permutation(train)
        for i in range(0, len(perm), 64):
            idx = perm[i:i + 64]
            loss, g = grads(params, x(idx), labels[idx])
            step += 1
            for k in range(len(params)):   # Adam
                m[k] = 0.9 * m[k] + 0.1 * g[k]
                v[k] = 0.999 * v[k] + 0.001 * g[k] ** 2
                params[k] -= lr * (m[k] / (1 - 0.9 ** step)) / (np.sqrt(v[k] / (1 - 0.999 ** step)) + 1e-8)
        if epoch % 10 == 9:
            acc = (forward(params, x(test)).argmax(1) == labels[test]).mean()
            print(f"epoch {epoch + 1}: loss {loss:.3f}, test accuracy {acc:.4f}")
    os.makedirs(OUT, exist_ok=True)
    model = to_onnx(params)
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(OUT, "digits_cnn.onnx"))
    np.savez_compressed(os.path.join(OUT, "digits.npz"), calib_images=images[calib], calib_labels=labels[calib],
                        test_images=images[test], test_labels=labels[test])
    print(f"wrote {OUT}/digits_cnn.onnx and digits.npz")


if __name__ == "__main__":
    main()
