"""What Ember's kernels are measured against, besides PyTorch: the plain NumPy ways of computing
the same thing (explicit im2col + BLAS for a convolution, an unfused softmax cross-entropy), and
the optional libraries found at run time."""

from __future__ import annotations

import numpy as np

TORCH_MISSING = "PyTorch is not installed (pip install 'ember[reference]')"


def torch():
    """PyTorch, or None where it is not installed (its references are then skipped)."""
    try:
        import torch as module
    except ImportError:
        return None
    return module


def im2col_patches(x, kh, kw, padding, stride):
    """(N, C*KH*KW, OH*OW) patch matrix of x, built whole, and (OH, OW)."""
    from numpy.lib.stride_tricks import sliding_window_view

    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    cols = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]  # N C OH OW KH KW
    n, c, oh, ow = cols.shape[:4]
    return np.ascontiguousarray(cols.transpose(0, 1, 4, 5, 2, 3)).reshape(n, c * kh * kw, oh * ow), (oh, ow)


def im2col_conv2d(x, w, b, padding=0, stride=1):
    """The explicit way: the whole patch matrix, then one GEMM per image (groups=1)."""
    o, _, kh, kw = w.shape
    patches, (oh, ow) = im2col_patches(x, kh, kw, padding, stride)
    y = np.matmul(w.reshape(o, -1), patches).reshape(x.shape[0], o, oh, ow)
    return y + b[None, :, None, None]


def im2col_conv2d_backward(x, w, dy, padding=0, stride=1, need_dx=True):
    """The explicit backward: dw = dy @ patchesᵀ and db summed over images, dx by col2im (one
    strided slice add per kernel tap)."""
    o, c, kh, kw = w.shape
    n, _, h, wd = x.shape
    patches, (oh, ow) = im2col_patches(x, kh, kw, padding, stride)
    dy2 = dy.reshape(n, o, oh * ow)
    dw = np.matmul(dy2, patches.transpose(0, 2, 1)).sum(axis=0).reshape(w.shape)
    db = dy.sum(axis=(0, 2, 3))
    dx = None
    if need_dx:
        dcols = np.matmul(w.reshape(o, -1).T, dy2).reshape(n, c, kh, kw, oh, ow)
        dxp = np.zeros((n, c, h + 2 * padding, wd + 2 * padding), x.dtype)
        for p in range(kh):
            for q in range(kw):
                dxp[:, :, p:p + stride * (oh - 1) + 1:stride, q:q + stride * (ow - 1) + 1:stride] += dcols[:, :, p, q]
        dx = dxp[:, :, padding:padding + h, padding:padding + wd]
    return dx, dw, db


def unfused_cross_entropy(z, t):
    """Mean cross-entropy and its gradient the unfused way: log-softmax materialised, then the
    loss, then softmax minus one-hot."""
    m = z.max(axis=1, keepdims=True)
    e = np.exp(z - m)
    s = e.sum(axis=1, keepdims=True)
    logp = z - m - np.log(s)
    loss = -logp[np.arange(z.shape[0]), t].mean()
    dz = e / s
    dz[np.arange(z.shape[0]), t] -= 1.0
    dz /= z.shape[0]
    return loss, dz
