"""com.microsoft transformer operators, as onnxruntime's transformer optimizer writes them
(onnxruntime/python/tools/transformers, ``optimize_model``): SkipLayerNormalization,
SkipSimplifiedLayerNormalization, EmbedLayerNormalization, Attention, MultiHeadAttention,
BiasGelu, FastGelu, Gelu. Semantics of docs/ContribOperators.md of onnxruntime and its
CPU kernels (attention masks as onnxruntime's PrepareMask builds them).

Arithmetic: float32 (float16 widened, rounded once at the end), except where onnxruntime
rounds in float32 on purpose and the result shows it: the additive attention mask is
built and added in float32, so a mask_filter_value of -3.4e38 swallows the scores the way
it does in onnxruntime (a fully masked row is uniform there too).
"""
from __future__ import annotations

import numpy as np

from ...validate import fail
from .common import erf, require_float, widened
from .registry import op

MS = "com.microsoft"


def _vector(node, v, n, what):
    if v is None:
        return None
    if v.size != n or v.ndim > 1 and any(d != 1 for d in v.shape[:-1]):
        fail(node, f"{what} must have {n} values (the hidden size), got shape {v.shape}")
    return widened(v).reshape(n).astype(np.float32)


def _norm(node, w, gamma, beta, eps, simplified=False):
    """(y, mean, inv_std) of rows w (float32) normalized over the last axis."""
    n = w.shape[-1]
    g, b = _vector(node, gamma, n, "gamma"), _vector(node, beta, n, "beta")
    mean = np.zeros(w.shape[:-1] + (1,), np.float32) if simplified else np.mean(w, -1, keepdims=True, dtype=np.float64)
    d = w - mean
    inv = 1 / np.sqrt(np.mean(np.square(d, dtype=np.float64), -1, keepdims=True) + np.float64(np.float32(eps)))
    y = d * inv * g
    if b is not None:
        y = y + b
    return y, mean.astype(np.float32), inv.astype(np.float32)


def _skip_sum(node, x, skip, bias):
    require_float(node, x)
    if x.ndim not in (2, 3):
        fail(node, f"input must be 2-D or 3-D (batch, sequence, hidden), got shape {x.shape}")
    if skip.dtype != x.dtype:
        fail(node, f"skip dtype {skip.dtype} differs from input dtype {x.dtype}")
    n = x.shape[-1]
    allowed = [x.shape] + ([(1,) + x.shape[1:], x.shape[1:]] if x.ndim == 3 else [])
    if skip.shape not in allowed:
        fail(node, f"skip of shape {skip.shape} does not match input of shape {x.shape} "
                   f"(one of {allowed})")
    w = widened(x).astype(np.float32) + widened(skip).astype(np.float32)
    b = _vector(node, bias, n, "bias")
    return w if b is None else w + b


@op("SkipLayerNormalization", domain=MS, attrs=("epsilon",))
def _skip_layer_norm(node, x, skip, gamma, beta=None, bias=None):
    """LayerNormalization(x + skip + bias) over the last axis; outputs (y, mean,
    inv_std_var, input_skip_bias_sum), the statistics float32 of shape (..., 1)."""
    s = _skip_sum(node, x, skip, bias)
    y, mean, inv = _norm(node, s, gamma, beta, node.attrs.get("epsilon", 1e-12))
    return y.astype(x.dtype), mean, inv, s.astype(x.dtype)


@op("SkipSimplifiedLayerNormalization", domain=MS, attrs=("epsilon",))
def _skip_simplified_layer_norm(node, x, skip, gamma, bias=None):
    """RMS normalization of x + skip + bias; outputs (y, mean (zeros), inv_std_var, sum)."""
    s = _skip_sum(node, x, skip, bias)
    y, mean, inv = _norm(node, s, gamma, None, node.attrs.get("epsilon", 1e-12), simplified=True)
    return y.astype(x.dtype), mean, inv, s.astype(x.dtype)


def _ids(node, v, what, shape):
    if v.dtype != np.int32:
        fail(node, f"{what} must be int32, got {v.dtype}")
    if v.shape != shape:
        fail(node, f"{what} must have shape {shape}, got {v.shape}")
    return v


def _rows_of(node, table, idx, what):
    if table.ndim != 2:
        fail(node, f"{what} must be 2-D, got shape {table.shape}")
    if idx.size and (idx.min() < 0 or idx.max() >= table.shape[0]):
        fail(node, f"{what} index out of range [0, {table.shape[0]})")
    return table[idx].astype(np.float32)              # the rows read, not the whole table


def _embed_check(node, graph):
    given = list(node.inputs) + [""] * (7 - len(node.inputs))
    missing = [k for k in (2, 3, 5, 6) if not given[k]]
    return f"required input(s) {missing} given as \"\"" if missing else None


# segment_ids (1) and segment_embedding (4) are optional: the signature's defaults, _embed_check the rest
@op("EmbedLayerNormalization", domain=MS, attrs=("epsilon", "mask_index_type"), check=_embed_check)
def _embed_layer_norm(node, input_ids, segment_ids=None, word=None, position=None, segment=None, gamma=None,
                      beta=None, mask=None, position_ids=None):
    """LayerNormalization(word[ids] + position[position ids] + segment[segment ids]);
    outputs (y, mask_index: the count of mask values equal to 1 per row (int32, zeros
    without a mask), embedding_sum)."""
    if input_ids.ndim != 2:
        fail(node, f"input_ids must be 2-D (batch, sequence), got shape {input_ids.shape}")
    _ids(node, input_ids, "input_ids", input_ids.shape)
    require_float(node, word)
    b, s = input_ids.shape
    if position_ids is None:
        pos = np.broadcast_to(np.arange(s), (b, s))
    else:
        if position_ids.shape not in ((b, s), (1, s)):
            fail(node, f"position_ids must have shape {(b, s)} or {(1, s)}, got {position_ids.shape}")
        pos = np.broadcast_to(position_ids, (b, s))
    e = _rows_of(node, word, input_ids, "word_embedding") + _rows_of(node, position, pos, "position_embedding")
    if segment is not None:
        if segment_ids is None:
            fail(node, "segment_embedding given without segment_ids")
        e = e + _rows_of(node, segment, _ids(node, segment_ids, "segment_ids", (b, s)), "segment_embedding")
    if e.shape[-1:] != word.shape[1:]:
        fail(node, f"embedding tables disagree on the hidden size: {word.shape}, {position.shape}")
    y, _, _ = _norm(node, e, gamma, beta, node.attrs.get("epsilon", 1e-12))
    if mask is not None:
        counts = np.sum(_ids(node, mask, "mask", (b, s)) == 1, axis=1).astype(np.int32)
    else:
        counts = np.zeros(b, np.int32)
    return y.astype(word.dtype), counts, e.astype(word.dtype)


# ---------------------------------------------------------------------------- attention

def additive_mask(node, mask_index, b, s, total, past, unidirectional, filt):
    """onnxruntime's (B, S, T) float32 additive mask: 0 where attended, mask_filter_value
    where masked by mask_index ((B) end positions, (2B) end then start positions, (B, T)
    or (B, S, T) raw 0/1 mask); unidirectional adds mask_filter_value after the diagonal."""
    m = np.zeros((b, s, total), np.float32)
    f = np.float32(filt)
    if mask_index is not None:
        if mask_index.dtype != np.int32:
            fail(node, f"mask_index must be int32, got {mask_index.dtype}")
        cols = np.arange(total)
        if mask_index.ndim == 1 and mask_index.shape[0] in (b, 2 * b):
            end = mask_index[:b].reshape(b, 1, 1)
            off = cols >= end
            if mask_index.shape[0] == 2 * b:
                off |= cols < np.minimum(mask_index[b:], total).reshape(b, 1, 1)
            m[np.broadcast_to(off, m.shape)] = f
        elif mask_index.shape == (b, total):
            m[:] = np.where(mask_index > 0, np.float32(0), f)[:, None, :]
        elif mask_index.shape == (b, s, total):
            m[:] = np.where(mask_index > 0, np.float32(0), f)
        else:
            fail(node, f"mask_index of shape {mask_index.shape} not supported: (batch), (2*batch), "
                       f"(batch, total sequence) = {(b, total)} or (batch, sequence, total) = {(b, s, total)}")
    if unidirectional:
        future = np.arange(total)[None, :] > past + np.arange(s)[:, None]
        m += np.where(future, f, np.float32(0))
    return m


def attend(q, k, v, mask, bias, scale):
    """softmax(scale * q k^T + mask + bias) v per (batch, head): q (B, N, S, H), k (B, N,
    T, H), v (B, N, T, Hv), mask (B, S, T) float32; scores rounded to float32 before the
    mask is added (onnxruntime's order). Returns (B, S, N * Hv)."""
    scores = (np.float64(scale) * (q.astype(np.float64) @ np.swapaxes(k, -1, -2).astype(np.float64)))
    scores = scores.astype(np.float32) + mask[:, None]
    if bias is not None:
        scores = scores + widened(bias).astype(np.float32)
    w = scores.astype(np.float64)
    e = np.exp(w - np.max(w, axis=-1, keepdims=True))
    p = e / np.sum(e, axis=-1, keepdims=True)
    out = p @ v.astype(np.float64)                          # (B, N, S, Hv)
    bsz, n, s, hv = out.shape
    return out.transpose(0, 2, 1, 3).reshape(bsz, s, n * hv)


def _heads(x, n):
    """(B, S, N*H) -> (B, N, S, H)."""
    b, s, d = x.shape
    return x.reshape(b, s, n, d // n).transpose(0, 2, 1, 3)


def _attention_check(node, graph):
    for a in ("do_rotary", "past_present_share_buffer"):
        if node.attrs.get(a, 0):
            return f"{a}=1 not supported"
    if node.attrs.get("num_heads", 0) < 1:
        return "num_heads must be a positive integer"
    return None


def _bias_check(node, bias, b, n, s, total):
    if bias is None:
        return
    if bias.ndim != 4 or bias.shape[0] not in (1, b) or bias.shape[1] not in (1, n) or bias.shape[2:] != (s, total):
        fail(node, f"attention_bias must have shape ({b} or 1, {n} or 1, {s}, {total}), got {bias.shape}")


@op("Attention", domain=MS,
    attrs=("num_heads", "qkv_hidden_sizes", "unidirectional", "mask_filter_value", "scale", "do_rotary",
           "past_present_share_buffer", "rotary_embedding_dim"),
    check=_attention_check)
def _attention(node, x, weights, bias=None, mask_index=None, past=None, attention_bias=None,
               past_sequence_length=None):
    """Self-attention with the Q, K, V projections packed in ``weights`` (input_hidden,
    q + k + v hidden); outputs (output (B, S, v_hidden), present (2, B, N, P + S, H))."""
    require_float(node, x)
    if x.ndim != 3:
        fail(node, f"input must be 3-D (batch, sequence, input_hidden), got shape {x.shape}")
    n = int(node.attrs["num_heads"])
    sizes = [int(v) for v in node.attrs.get("qkv_hidden_sizes", [])]
    if weights.ndim != 2 or weights.shape[0] != x.shape[2]:
        fail(node, f"weights must have shape ({x.shape[2]}, q+k+v hidden), got {weights.shape}")
    if not sizes:
        if weights.shape[1] % 3:
            fail(node, f"weights' columns {weights.shape[1]} are not 3 * hidden")
        sizes = [weights.shape[1] // 3] * 3
    if len(sizes) != 3 or sum(sizes) != weights.shape[1] or sizes[0] != sizes[1] or any(h % n or h < n for h in sizes):
        fail(node, f"qkv_hidden_sizes {sizes} must be 3 sizes, q = k, each a multiple of num_heads {n}, "
                   f"summing to the weights' {weights.shape[1]} columns")
    if bias is not None and bias.shape != (weights.shape[1],):
        fail(node, f"bias must have shape ({weights.shape[1]},), got {bias.shape}")
    if past_sequence_length is not None:
        fail(node, "past_sequence_length (a shared past/present buffer) not supported")
    b, s, _ = x.shape
    qkv = widened(x).astype(np.float64) @ widened(weights).astype(np.float64)
    if bias is not None:
        qkv = qkv + widened(bias)
    qkv = qkv.astype(np.float32)                            # onnxruntime's float32 GEMM output
    q, k, v = (_heads(t, n) for t in np.split(qkv, np.cumsum(sizes)[:2], axis=-1))
    p = 0
    if past is not None:
        if past.shape[:3] != (2, b, n) or past.shape[4] != sizes[0] // n or sizes[1] != sizes[2]:
            fail(node, f"past must have shape (2, {b}, {n}, past_sequence, {sizes[0] // n}), got {past.shape}")
        p = past.shape[3]
        k = np.concatenate([widened(past[0]).astype(np.float32), k], axis=2)
        v = np.concatenate([widened(past[1]).astype(np.float32), v], axis=2)
    total = p + s
    _bias_check(node, attention_bias, b, n, s, total)
    mask = additive_mask(node, mask_index, b, s, total, p, node.attrs.get("unidirectional", 0),
                         node.attrs.get("mask_filter_value", -10000.0))
    scale = node.attrs.get("scale", 0.0) or 1 / np.sqrt(sizes[0] // n)
    out = attend(q, k, v, mask, attention_bias, scale).astype(x.dtype)
    present = np.stack([k, v]).astype(x.dtype) if sizes[1] == sizes[2] else None
    if len(node.outputs) > 1 and node.outputs[1] and present is None:
        fail(node, "present needs k and v of the same hidden size")
    return out, present


def _mha_check(node, graph):
    if node.attrs.get("num_heads", 0) < 1:
        return "num_heads must be a positive integer"
    if node.attrs.get("unidirectional", 0):
        return "unidirectional not supported"
    return None


@op("MultiHeadAttention", domain=MS, attrs=("num_heads", "mask_filter_value", "scale", "unidirectional"),
    check=_mha_check)
def _multi_head_attention(node, query, key=None, value=None, bias=None, key_padding_mask=None,
                          attention_bias=None, past_key=None, past_value=None):
    """Attention of separate (B, S, D) query, (B, T, D) key and (B, T, Dv) value (already
    projected; ``bias`` (D + D + Dv) added to each), key_padding_mask (B) / (B, T) / (B, S, T)
    as Attention's mask_index; outputs (output, present_key, present_value) (B, N, T, H).
    The packed layouts (QKV in query, key/value already split in heads) are refused."""
    require_float(node, query)
    n = int(node.attrs["num_heads"])
    if query.ndim != 3 or key is None or value is None or key.ndim != 3 or value.ndim != 3:
        fail(node, "only separate 3-D query, key and value are supported (not packed QKV/KV or per-head key/value)")
    b, s, d = query.shape
    t, dv = key.shape[1], value.shape[2]
    if key.shape != (b, t, d) or value.shape[:2] != (b, t) or d % n or dv % n:
        fail(node, f"query {query.shape}, key {key.shape}, value {value.shape} disagree (num_heads {n})")
    q, k, v = (widened(a).astype(np.float32) for a in (query, key, value))
    if bias is not None:
        if bias.shape != (2 * d + dv,):
            fail(node, f"bias must have shape ({2 * d + dv},), got {bias.shape}")
        bb = widened(bias).astype(np.float32)
        q, k, v = q + bb[:d], k + bb[d:2 * d], v + bb[2 * d:]
    q, k, v = _heads(q, n), _heads(k, n), _heads(v, n)
    if (past_key is None) != (past_value is None):
        fail(node, "past_key and past_value go together")
    p = 0
    if past_key is not None:
        if past_key.shape[:2] != (b, n) or past_key.shape[3] != d // n or past_value.shape[:3] != past_key.shape[:3]:
            fail(node, f"past_key/past_value must be ({b}, {n}, past, head size), "
                       f"got {past_key.shape}, {past_value.shape}")
        p = past_key.shape[2]
        k = np.concatenate([widened(past_key).astype(np.float32), k], axis=2)
        v = np.concatenate([widened(past_value).astype(np.float32), v], axis=2)
    total = p + t
    _bias_check(node, attention_bias, b, n, s, total)
    mask = additive_mask(node, key_padding_mask, b, s, total, p, False,
                         node.attrs.get("mask_filter_value", -10000.0))
    scale = node.attrs.get("scale", 0.0) or 1 / np.sqrt(d // n)
    out = attend(q, k, v, mask, attention_bias, scale).astype(query.dtype)
    return out, k.astype(query.dtype), v.astype(query.dtype)


# -------------------------------------------------------------------------------- GELUs

def _gelu_exact(w):
    return 0.5 * w * (1 + erf(w / np.sqrt(2).astype(w.dtype)))


def _plus_bias(node, x, bias):
    require_float(node, x)
    w = widened(x).astype(np.float32)
    if bias is None:
        return w
    if bias.ndim != 1 or x.ndim < 1 or bias.shape[0] != x.shape[-1]:
        fail(node, f"bias must be 1-D of the input's last dimension {x.shape[-1:]}, got shape {bias.shape}")
    return w + widened(bias).astype(np.float32)


@op("Gelu", domain=MS)
def _ms_gelu(node, x):
    """The exact GELU, x * (1 + erf(x / sqrt 2)) / 2."""
    return _gelu_exact(_plus_bias(node, x, None)).astype(x.dtype)


@op("BiasGelu", domain=MS)
def _bias_gelu(node, x, bias):
    """The exact GELU of x + bias (bias along the last axis)."""
    return _gelu_exact(_plus_bias(node, x, bias)).astype(x.dtype)


@op("FastGelu", domain=MS)
def _fast_gelu(node, x, bias=None):
    """The tanh approximation of the GELU of x (+ bias)."""
    w = _plus_bias(node, x, bias).astype(np.float64)
    return (0.5 * w * (1 + np.tanh(0.7978845608028654 * (w + 0.044715 * w ** 3)))).astype(x.dtype)
