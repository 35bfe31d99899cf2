"""A numpy model of the memory-bound kernels and of the FP16/FP32 convolutions, running a
lowered :class:`GpuProgram` launch by launch on the CPU over a byte arena laid out as the GPU's.

It models what each kernel computes from its ``KArgs`` (the contract the lowering writes), not
how: CI checks the lowering's views, fusions, concat slots and memory plan end to end with it,
and the H100 tests check the kernels themselves. Kernels it does not model raise
``NotImplementedError``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from gpu_kernels.lowering import ACT, MAXR, GpuProgram, Launch, Ref
from gpu_kernels.lowering.conv import DW_STRIP
from gpu_kernels.lowering.program import grid1d

DTYPES = {"f16": np.float16, "f32": np.float32, "i8": np.int8, "i32": np.int32,
          "i64": np.int64}
_ACT = {v: k for k, v in ACT.items()}


_erf = np.vectorize(math.erf, otypes=[np.float64])


def dw_strip_of(ln: Launch) -> int:
    """Output pixels of a row a thread of depthwise launch ``ln`` computes (its name says)."""
    return 1 if "_px1_" in ln.kernel else DW_STRIP


def force_dw_strip(monkeypatch: pytest.MonkeyPatch, strip: int) -> None:
    """Lower every depthwise convolution with strips of ``strip`` pixels, whatever its grid
    (lowering/conv.py's dw_strip picks 1 for the tests' small grids)."""
    from gpu_kernels.lowering import conv

    monkeypatch.setattr(conv, "dw_strip", lambda p, v, sm_count: strip)


def activate(x: np.ndarray, act: int, a: float, b: float) -> np.ndarray:
    kind = _ACT[act]
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    f = {
        "none": lambda v: v, "relu": lambda v: np.maximum(v, 0), "clip":
        lambda v: np.minimum(np.maximum(v, a), b), "leaky": lambda v: np.where(v >= 0, v, a * v),
        "sigmoid": sig, "silu": lambda v: v * sig(v),
        "hardswish": lambda v: v * np.clip(v / 6 + 0.5, 0, 1),
        "hardsigmoid": lambda v: np.clip(a * v + b, 0, 1), "tanh": np.tanh, "exp": np.exp,
        "sqrt": np.sqrt, "recip": lambda v: 1 / v, "neg": lambda v: -v, "abs": np.abs,
        "elu": lambda v: np.where(v >= 0, v, a * (np.exp(v) - 1)),
        "softplus": lambda v: np.log1p(np.exp(v)), "log": np.log, "erf": _erf,
        "gelu": lambda v: 0.5 * v * (1 + _erf(v / np.sqrt(2.0))),
        "gelu_tanh": lambda v: 0.5 * v * (1 + np.tanh(np.sqrt(2 / np.pi)
                                                      * (v + 0.044715 * v ** 3))),
        "mish": lambda v: v * np.tanh(np.log1p(np.exp(v))),
        "floor": np.floor, "ceil": np.ceil, "round": np.rint, "sign": np.sign,
        "selu": lambda v: b * np.where(v > 0, v, a * np.expm1(v)),
        "celu": lambda v: np.maximum(v, 0) + np.minimum(0, a * np.expm1(v / a)),
        "softsign": lambda v: v / (1 + np.abs(v)),
        "thresholded_relu": lambda v: np.where(v > a, v, 0), "sin": np.sin, "cos": np.cos,
    }[kind]
    with np.errstate(all="ignore"):
        return f(x.astype(np.float32)).astype(np.float32)


def binop(op: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """As elementwise.cu's binop: arithmetic, fmod, comparisons and logic (0 / 1)."""
    with np.errstate(all="ignore"):
        return [np.add, np.subtract, np.multiply, np.divide, np.power, np.maximum,
                np.minimum, np.fmod, np.equal, np.less, np.greater, np.less_equal,
                np.greater_equal, lambda a, b: (a != 0) & (b != 0),
                lambda a, b: (a != 0) | (b != 0)][op](u, v).astype(np.float32)


def _index(dims: list[int], strides: list[int]) -> np.ndarray:
    """Element offsets of a strided loop, in loop order (outermost first)."""
    idx = np.zeros(1, np.int64)
    for n, s in zip(dims, strides):
        idx = (idx[:, None] + np.arange(n, dtype=np.int64)[None, :] * s).reshape(-1)
    return idx


def _softmax(v: np.ndarray, log: bool) -> np.ndarray:
    """Softmax (or its log) along the last axis, as the kernels compute it."""
    m = v.max(axis=-1, keepdims=True)
    s = np.exp(v - m).sum(axis=-1, keepdims=True)
    return (v - m - np.log(s)) if log else np.exp(v - m) / s


class KernelSim:
    def __init__(self, prog: GpuProgram) -> None:
        self.prog = prog
        self.arena = np.zeros(prog.arena_bytes + 16, np.uint8)
        self.weights = np.zeros(prog.weight_bytes + 16, np.uint8)
        for off, arr in prog.weights:
            raw = np.ascontiguousarray(arr).view(np.uint8).reshape(-1)
            self.weights[off:off + raw.size] = raw
        self.io = {id(b): np.zeros(b.nbytes, np.uint8) for b in prog.buffers
                   if b.kind in ("input", "output")}

    def mem(self, ref: Ref | None, dt: str) -> np.ndarray:
        """The memory from a pointer on, typed (a view: writes land in the arena)."""
        assert ref is not None
        if ref.weight:
            region, off = self.weights, ref.byte_offset
        elif ref.buf is not None and ref.buf.kind == "arena":
            region, off = self.arena, ref.buf.offset + ref.byte_offset
        else:
            assert ref.buf is not None
            region, off = self.io[id(ref.buf)], ref.byte_offset
        size = np.dtype(DTYPES[dt]).itemsize
        end = off + (region.size - off) // size * size
        return region[off:end].view(DTYPES[dt])

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for name, (buf, _, dt) in self.prog.inputs.items():
            self.io[id(buf)][:] = np.ascontiguousarray(feeds[name], dt).view(np.uint8).reshape(-1)
        for ln in self.prog.launches:
            self.launch(ln)
        return {name: self.io[id(buf)].view(dt).reshape(shape).copy()
                for name, (buf, shape, dt) in self.prog.outputs.items()}

    def launch(self, ln: Launch) -> None:
        kernel = ln.kernel
        if kernel == "memset":
            self.mem(ln.ptrs[0], "i8")[:ln.ints[0]] = 0
        elif kernel.startswith("copy_"):
            self.copy(ln, *kernel.split("_")[1:3])
        elif kernel.startswith("fused_"):  # fused_T (in and out T) or fused_T_TO
            dts = kernel.split("_")[1:3]
            self.fused(ln, dts[0], dts[-1])
        elif kernel.startswith("space_to_depth_"):
            self.space_to_depth(ln, *kernel.split("_")[3:5])
        elif kernel.startswith(("conv_mma", "conv_tiled", "conv_direct", "conv_dw",
                                "se_dw_pool")) \
                and not kernel.endswith("_i8"):
            self.conv(ln, kernel.split("_")[-1])
        elif kernel.startswith("conv_dw") and kernel.endswith("_f16_i8"):
            self.conv(ln, "f16")  # FP16 in, INT8 out (times f[2])
        elif kernel == "conv_mma_i8":
            self.conv(ln, "i8")
        elif kernel.startswith("pool2d_"):
            self.pool(ln, kernel.split("_")[-1])
        elif kernel.startswith("global_avgpool_"):
            n, hw, c = ln.ints[:3]
            dt = kernel.split("_")[-1]
            x = self.mem(ln.ptrs[0], dt)[:n * hw * c].reshape(n, hw, c).astype(np.float32)
            self.store(self.mem(ln.ptrs[1], dt), np.arange(n * c), x.mean(axis=1).reshape(-1))
        elif kernel.startswith("se_pool_"):
            self.se_pool(ln, kernel.split("_")[-1])
        elif kernel.startswith("se_scale_"):
            self.se_scale(ln, kernel.removesuffix("_i8").split("_")[-1],
                          "i8" if kernel.endswith("_i8") else kernel.split("_")[-1])
        elif kernel.startswith("bmm_"):
            self.bmm(ln, kernel.split("_")[-1])
        elif kernel.startswith("rnn_"):
            self.rnn(ln, kernel.split("_")[-1])
        elif kernel.startswith(("softmax_lastdim_", "layernorm_lastdim_")):
            self.rows(ln, kernel.split("_")[-1])
        elif kernel.startswith("reduce_axes_"):
            self.reduce(ln, kernel.split("_")[-1])
        elif kernel.startswith("softmax_axis_"):
            self.softmax_axis(ln, kernel.split("_")[-1])
        elif kernel.startswith("groupnorm_"):
            self.groupnorm(ln, kernel.split("_")[-1])
        elif kernel.startswith("gather_rows_"):
            n, row, vocab = ln.ints[:3]
            dt, it = kernel.split("_")[2:4]
            idx = self.mem(ln.ptrs[1], it)[:n].astype(np.int64)
            idx = np.clip(np.where(idx < 0, idx + vocab, idx), 0, vocab - 1)
            table = self.mem(ln.ptrs[0], dt)[:vocab * row].reshape(vocab, row)
            self.mem(ln.ptrs[2], dt)[:n * row] = table[idx].reshape(-1)
        elif kernel.startswith("grid_sample_"):
            self.grid_sample(ln, kernel.split("_")[-1])
        elif kernel.startswith("pad_nd_"):
            self.pad(ln, kernel.split("_")[-1])
        elif kernel.startswith("resize_nhwc_"):
            self.resize(ln, kernel.split("_")[-1])
        else:
            raise NotImplementedError(f"kernel {kernel} ({ln.layer}) is not modelled")

    @staticmethod
    def store(y: np.ndarray, idx: np.ndarray, v: np.ndarray) -> None:
        if y.dtype == np.int8:
            v = np.clip(np.rint(v), -128, 127)
        y[idx] = v.astype(y.dtype)

    def copy(self, ln: Launch, ti: str, to: str) -> None:
        rank = ln.ints[0]
        dims = ln.ints[1:1 + rank]
        xs, ys = ln.ints[1 + MAXR:1 + MAXR + rank], ln.ints[1 + 2 * MAXR:1 + 2 * MAXR + rank]
        x, y = self.mem(ln.ptrs[0], ti), self.mem(ln.ptrs[1], to)
        v = x[_index(dims, xs)].astype(np.float32)
        self.store(y, _index(dims, ys), v * np.float32(ln.floats[0]))

    def fused(self, ln: Launch, dt: str, to: str) -> None:
        """Inputs read and the program computed in ``dt``, the result stored as ``to``; with
        pieces (a Concat of chains), each element runs its piece's instructions only and
        reads only the inputs its piece uses (at their shifted offsets)."""
        rank, nin, nops = ln.ints[:3]
        npieces = ln.ints[3] if len(ln.ints) > 3 else 0
        desc = self.mem(ln.ptrs[0], "f32").view(np.int32)
        dims = [int(d) for d in desc[:rank]]
        y = self.mem(ln.ptrs[1], to)
        yidx = _index(dims, [int(s) for s in desc[MAXR:MAXR + rank]])
        at = MAXR * (2 + nin)
        coord = np.zeros(yidx.size, np.int64)
        if npieces:
            coord = _index(dims, [int(s) for s in desc[at:at + rank]])
            at += MAXR
        ops = desc[at:at + 4 * nops].reshape(nops, 4)
        bits = ops.view(np.float32)
        at += 4 * nops
        if npieces:
            ptab = desc[at:at + 3 * npieces].reshape(npieces, 3).astype(np.int64)
            ltab = desc[at + 3 * npieces:at + 3 * npieces + 2 * nin].reshape(nin, 2)
        else:
            ptab = np.array([[2**31 - 1, nops, nin + nops - 1]], np.int64)
            ltab = np.array([[0, 1]] * nin, np.int64)
        piece = np.searchsorted(ptab[:-1, 0], coord, side="right")
        for p in range(len(ptab)):
            sel = piece == p
            if not sel.any():
                continue
            regs: list[np.ndarray] = []
            for j in range(nin):
                if int(ltab[j, 1]) >> p & 1:
                    st = [int(s) for s in desc[MAXR * (2 + j):MAXR * (2 + j) + rank]]
                    idx = _index(dims, st)[sel] + int(ltab[j, 0])
                    regs.append(self.mem(ln.ptrs[2 + j], dt)[idx].astype(np.float32))
                else:  # not read for this piece (the kernel loads 0)
                    regs.append(np.zeros(int(sel.sum()), np.float32))
            regs += [np.zeros(0, np.float32)] * nops
            first = int(ptab[p - 1, 1]) if p else 0
            for j in range(first, int(ptab[p, 1])):
                code, a = int(ops[j, 0]), int(ops[j, 1])
                if code < 16:
                    r = binop(code, regs[a], regs[int(ops[j, 2])])
                elif code < 32:
                    r = binop(code - 16, regs[a], bits[j, 2])
                elif code < 48:
                    r = binop(code - 32, bits[j, 2], regs[a])
                elif code == 48:  # select
                    r = np.where(regs[a] != 0, regs[int(ops[j, 2])], regs[int(ops[j, 3])])
                else:
                    r = activate(regs[a], code - 64, float(bits[j, 2]), float(bits[j, 3]))
                regs[nin + j] = r
            self.store(y, yidx[sel], regs[int(ptab[p, 2])])

    def space_to_depth(self, ln: Launch, ti: str, to: str) -> None:
        N, C, H, W, s, ph, pw, U, V, cp = ln.ints
        x = self.mem(ln.ptrs[0], ti)[:N * C * H * W].reshape(N, C, H, W).astype(np.float32)
        xp = np.zeros((N, C, U * s + ph + H, V * s + pw + W), np.float32)
        xp[:, :, ph:ph + H, pw:pw + W] = x
        y = np.zeros((N, U, V, cp), np.float32)
        for bh in range(s):
            for bw in range(s):
                blk = xp[:, :, bh:bh + U * s:s, bw:bw + V * s:s]  # (N, C, U, V)
                c0 = (bh * s + bw) * C
                y[..., c0:c0 + C] = blk.transpose(0, 2, 3, 1)
        self.mem(ln.ptrs[1], to)[:y.size] = y.reshape(-1).astype(DTYPES[to])

    def nhwc(self, ref: Ref | None, dt: str, n: int, h: int, w: int, c: int,
             cs: int) -> np.ndarray:
        """An NHWC tensor whose pixels are ``cs`` elements apart (a concat's channel slice)."""
        return self.mem(ref, dt)[_index([n, h, w, c], [h * w * cs, w * cs, cs, 1])] \
            .reshape(n, h, w, c)

    def put_nhwc(self, ref: Ref | None, dt: str, v: np.ndarray, cs: int) -> None:
        n, h, w, c = v.shape
        self.store(self.mem(ref, dt), _index([n, h, w, c], [h * w * cs, w * cs, cs, 1]),
                   v.reshape(-1))

    def conv(self, ln: Launch, dt: str) -> None:
        """Every convolution kernel; ``dt`` "i8" is conv_mma_i8: INT8 input and weights, the
        integer sums times dq[k] (input scale x the channel's weight scale), then bias,
        residual (INT8: times its scale) and activation, written FP16 or INT8 (i[23])."""
        (n, h, w, c, k, p, q, r, s, sh, sw, ph, pw, dh, dw, groups, act, res_after, xcs, ycs,
         rcs) = ln.ints[:21]
        i8, mma = dt == "i8", ln.kernel.startswith("conv_mma")  # only conv_mma has i[22:24]
        res_dt = "i8" if mma and ln.ints[22] else ("f16" if i8 else dt)
        out_dt = "i8" if (mma and ln.ints[23]) or ln.kernel.endswith("_f16_i8") \
            else ("f16" if i8 else dt)
        # conv_mma -DD2S / conv_tiled_d2s: a 1x1 GEMM to F*F*Ko columns written upsampled; F
        # in the groups slot
        d2s = groups if (ln.tactic is not None and ln.tactic.d2s) or "_d2s_" in ln.kernel else 0
        groups = 1 if d2s else groups
        cg, kg = c // groups, k // groups
        if mma and groups > 1:  # bundles (conv_mma.cu): the groups slot holds a bundle's K;
            # bundle b reads input channels [b * C, (b + 1) * C), weights [K][R][S][C]
            cg, kg, groups = c, groups, k // groups
            c = groups * cg
            assert ln.tactic is not None and kg % ln.tactic.bn == 0, ln.layer  # no straddling
        x = self.nhwc(ln.ptrs[0], dt, n, h, w, c, xcs).astype(np.float32)
        if ln.kernel.startswith("conv_dw"):  # a thread a strip of pixels of a row
            v = 8 if "_x8_" in ln.kernel else 1
            assert ln.grid == grid1d(n * p * -(-q // dw_strip_of(ln)) * k // v), ln.layer
            if v == 8:  # 16-byte vectors: the lowering's promise
                y_offset = ln.ptrs[4].byte_offset // (1 if out_dt == "i8" else 2)
                assert all(e % 8 == 0 for e in (c, xcs, ycs, ln.ptrs[0].byte_offset // 2,
                                                y_offset)), ln.layer
        if ln.kernel.startswith(("conv_dw", "se_dw_pool")):  # depthwise weights: [R][S][C]
            wd = self.mem(ln.ptrs[1], dt)[:r * s * c].reshape(r, s, c).astype(np.float32)
            wk = np.transpose(wd, (2, 0, 1))[:, :, :, None]  # [K = C][R][S][1]
        else:  # [K][R][S][C / groups]
            wk = self.mem(ln.ptrs[1], dt)[:k * r * s * cg].reshape(k, r, s, cg) \
                .astype(np.float32)
        xp = np.zeros((n, h + ph + (p - 1) * sh + (r - 1) * dh + 1,
                       w + pw + (q - 1) * sw + (s - 1) * dw + 1, c), np.float32)
        xp[:, ph:ph + h, pw:pw + w] = x
        acc = np.zeros((n, p, q, k), np.float32)
        for i in range(r):
            for j in range(s):
                tap = xp[:, i * dh:i * dh + p * sh:sh, j * dw:j * dw + q * sw:sw]
                for g in range(groups):
                    ks = slice(g * kg, (g + 1) * kg)
                    acc[..., ks] += np.einsum("npqc,kc->npqk", tap[..., g * cg:(g + 1) * cg],
                                              wk[ks, i, j])
        if i8:
            acc *= self.mem(ln.ptrs[7], "f32")[:k]
        if ln.ptrs[2] is not None:
            acc += self.mem(ln.ptrs[2], "f32")[:k]
        res = self.nhwc(ln.ptrs[3], res_dt, n, p, q, k, rcs).astype(np.float32) \
            if ln.ptrs[3] is not None else 0.0
        if res_dt == "i8":
            res = res * np.float32(ln.floats[3])
        if not res_after:
            acc = acc + res
        acc = activate(acc, act, ln.floats[0], ln.floats[1])
        if res_after:
            acc = acc + res
        if d2s:  # column (dy*F + dx)*Ko + ko of pixel (h, w) is channel ko of (h*F+dy, w*F+dx)
            acc = acc.reshape(n, p, q, d2s, d2s, k // d2s ** 2).transpose(0, 1, 3, 2, 4, 5) \
                .reshape(n, p * d2s, q * d2s, k // d2s ** 2)
        if out_dt == "i8":
            acc = acc * np.float32(ln.floats[2])
        self.put_nhwc(ln.ptrs[4], out_dt, acc, ycs)
        if ln.kernel.startswith("se_dw_pool"):
            self.dw_pool_sums(ln, acc)

    @staticmethod
    def pool_sums(ln: Launch, px: np.ndarray, ct: int, chunk: int) -> np.ndarray:
        """The pools' partial sums of ``px`` (N x HW x C): CTA (b, tile, n) sums pixels
        [b * chunk, (b + 1) * chunk) of image n over its CT channel vectors (se.cu)."""
        n, hw, k = px.shape
        v = 8 if "_x8_" in ln.kernel else 1
        blocks, tiles = ln.grid[:2]
        assert ln.grid[2] == n and tiles == -(-(k // v) // ct) and ct <= 32, ln.layer
        assert (blocks - 1) * chunk < hw <= blocks * chunk, ln.layer  # every pixel, once
        assert ln.block == 256 and ln.smem >= 256 * max(v, 2) * 4, ln.layer
        return np.stack([px[:, b * chunk:(b + 1) * chunk].sum(axis=1) for b in range(blocks)],
                        1)

    def dw_pool_sums(self, ln: Launch, out: np.ndarray) -> None:
        """se_dw_pool's partial sums of its output, then the hidden layer (se_hidden). Its
        blocks are of strips (the last of a row shorter), not of pixels."""
        n, p, q, k = out.shape
        ct, chunk = ln.ints[21:23]
        strip = dw_strip_of(ln)
        qb = -(-q // strip)
        strips = np.zeros((n, p, qb * strip, k), np.float32)
        strips[:, :, :q] = out
        strips = strips.reshape(n, p * qb, strip, k).sum(axis=2)
        sums = self.pool_sums(ln, strips, ct, chunk)
        self.se_hidden(ln, "f16" if ln.kernel.endswith("_f16") else "f32", sums, ln.ptrs[5],
                       ln.ptrs[6], ln.ptrs[7], p * q, ct, ln.ints[23:25], ln.floats[2:4])

    def se_fc(self, fc: Ref | None, dt: str, s: int, c: int) -> tuple[np.ndarray, ...]:
        """An SE block's {w1 (S x C), w2t (S x C)} of the activations' type ``dt``, then {b1,
        b2} in FP32 at the next 16 bytes (se.cu: se_biases)."""
        assert fc is not None
        w = self.mem(fc, dt)[:2 * s * c].astype(np.float32)
        nbytes = 2 * s * c * np.dtype(DTYPES[dt]).itemsize
        b = self.mem(Ref(None, fc.byte_offset + -(-nbytes // 16) * 16, weight=True),
                     "f32")[:s + c]
        return w[:s * c].reshape(s, c), w[s * c:].reshape(s, c), b[:s], b[s:]

    def se_hidden(self, ln: Launch, dt: str, sums: np.ndarray, ws: Ref | None, fc: Ref | None,
                  counters: Ref | None, hw: int, ct: int, ints: list[int],
                  floats: list[float]) -> None:
        """The pools' workspace: the partial sums (N x B x C), each channel tile's share of the
        first FC (N x tiles x S: its means times its columns of w1, by the last CTA of the
        tile), then the hidden layer (N x S: the shares added in tile order, the bias, the
        activation, by the last of those CTAs of each image; se.cu: se_hidden_if_last). The
        counters (per (image, tile), then per image) stay zero."""
        n, blocks, c = sums.shape
        s, act = ints
        width = ct * (8 if "_x8_" in ln.kernel else 1)  # a tile's channels
        tiles = ln.grid[1]
        assert counters is not None and ws is not None, ln.layer
        assert not self.mem(counters, "i32")[:n * tiles + n].any(), ln.layer
        w1, _, b1, _ = self.se_fc(fc, dt, s, c)
        means = sums.sum(axis=1) / hw
        shares = np.stack([means[:, t * width:(t + 1) * width] @ w1[:, t * width:(t + 1) * width].T
                           for t in range(tiles)], 1)  # N x tiles x S
        hid = activate(b1 + shares.sum(axis=1), act, floats[0], floats[1])
        out = self.mem(ws, "f32")
        out[:sums.size] = sums.reshape(-1)
        out[sums.size:sums.size + shares.size] = shares.reshape(-1)
        out[sums.size + shares.size:sums.size + shares.size + n * s] = hid.reshape(-1)

    def se_pool(self, ln: Launch, dt: str) -> None:
        """se_pool's partial sums of its input, then the hidden layer (se_hidden)."""
        n, hw, c, xcs, ct, chunk = ln.ints[:6]
        x = self.nhwc(ln.ptrs[0], dt, n, 1, hw, c, xcs).astype(np.float32)[:, 0]
        if "_x8_" in ln.kernel:  # 16-byte vectors: the lowering's promise
            assert all(e % 8 == 0 for e in (c, xcs, ln.ptrs[0].byte_offset // 2)), ln.layer
        sums = self.pool_sums(ln, x, ct, chunk)
        self.se_hidden(ln, dt, sums, ln.ptrs[1], ln.ptrs[2], ln.ptrs[3], hw, ct, ln.ints[6:8],
                       ln.floats[:2])

    def se_scale(self, ln: Launch, dt: str, to: str) -> None:
        """The gate (fc2 of the hidden layer the pool's last CTAs wrote, N x S FP32) and
        x * gate, written as ``to`` (INT8: times 1 / its scale, rounded and saturated); CTA
        (block, tile, n) over its pixels x CT channel vectors."""
        n, hw, c, xcs, ycs, ct, chunk, s, gate = ln.ints[:9]
        v = 8 if "_x8_" in ln.kernel else 1
        blocks, tiles = ln.grid[:2]
        assert ln.grid[2] == n and tiles == -(-(c // v) // ct) and ct <= 32, ln.layer
        assert (blocks - 1) * chunk < hw <= blocks * chunk, ln.layer  # every pixel, once
        assert ln.block == 256 and ln.smem >= (s + (256 + ct) * v) * 4, ln.layer
        if v == 8:  # 16-byte vectors: the lowering's promise
            y_offset = ln.ptrs[2].byte_offset // (1 if to == "i8" else 2)
            assert all(e % 8 == 0 for e in (c, xcs, ycs, ln.ptrs[0].byte_offset // 2,
                                            y_offset)), ln.layer
        hid = self.mem(ln.ptrs[1], "f32")[:n * s].reshape(n, s)
        _, w2t, _, b2 = self.se_fc(ln.ptrs[3], dt, s, c)
        g = activate(hid @ w2t + b2, gate, ln.floats[1], ln.floats[2])
        x = self.nhwc(ln.ptrs[0], dt, n, 1, hw, c, xcs).astype(np.float32)
        self.put_nhwc(ln.ptrs[2], to, x * (g * ln.floats[0])[:, None, None, :], ycs)

    def pool(self, ln: Launch, dt: str) -> None:
        (n, h, w, c, p, q, kh, kw, sh, sw, ph, pw, dh, dw, is_max, include_pad, pb,
         pr, xcs, ycs) = ln.ints[:20]
        if ln.kernel.startswith("pool2d_x8_"):  # 16-byte vectors: the lowering's promise
            assert all(v % 8 == 0 for v in (c, xcs, ycs, ln.ptrs[0].byte_offset // 2,
                                            ln.ptrs[1].byte_offset // 2)), ln.layer
        x = self.nhwc(ln.ptrs[0], dt, n, h, w, c, xcs).astype(np.float32)
        fill = -np.inf if is_max else 0.0
        xp = np.full((n, h + ph + pb + p * sh + kh * dh, w + pw + pr + q * sw + kw * dw, c),
                     fill, np.float32)
        xp[:, ph:ph + h, pw:pw + w] = x
        inside = np.zeros(xp.shape[1:3], np.float32)  # averages exclude the padding
        inside[ph:ph + h, pw:pw + w] = 1.0
        taps = [xp[:, i * dh:i * dh + p * sh:sh, j * dw:j * dw + q * sw:sw]
                for i in range(kh) for j in range(kw)]
        if is_max:
            out = np.max(taps, axis=0)
        elif include_pad:
            out = np.sum(taps, axis=0) / (kh * kw)
        else:
            cnt = sum(inside[i * dh:i * dh + p * sh:sh, j * dw:j * dw + q * sw:sw]
                      for i in range(kh) for j in range(kw))
            out = np.sum(taps, axis=0) / cnt[None, :, :, None]
        self.put_nhwc(ln.ptrs[1], dt, out, ycs)

    def bmm(self, ln: Launch, dt: str) -> None:
        batch, m, n, k, lda, ldb, ldc, sa, sb, sc, act, at, bt, inner, sai, sbi, sci = ln.ints[:17]
        a_mem, b_mem, c_mem = (self.mem(ln.ptrs[i], dt) for i in (0, 1, 3))
        for z in range(batch):
            bo, bi = divmod(z, inner)
            ia = bo * sa + bi * sai + (_index([k, m], [lda, 1]).reshape(k, m).T if at
                                       else _index([m, k], [lda, 1]).reshape(m, k))
            ib = bo * sb + bi * sbi + (_index([n, k], [ldb, 1]).reshape(n, k).T if bt
                                       else _index([k, n], [ldb, 1]).reshape(k, n))
            c = (a_mem[ia].astype(np.float32) @ b_mem[ib].astype(np.float32)) * ln.floats[2]
            if ln.ptrs[2] is not None:
                c = c + self.mem(ln.ptrs[2], "f32")[:n]
            c = activate(c, act, ln.floats[0], ln.floats[1])
            self.store(c_mem, bo * sc + bi * sci + _index([m, n], [ldc, 1]), c.reshape(-1))

    def rnn(self, ln: Launch, dt: str) -> None:
        """rnn.cu: per (batch entry, direction) the whole time loop, FP32 inside, states and
        outputs stored in ``dt`` (the projection and R as the lowering stored them)."""
        steps, batch, hid, gates, lbr, reverse, p_t, p_b, y_t, y_d, y_b, s_d, s_b = ln.ints[:13]
        dirs = ln.grid[1]
        gh = gates * hid
        proj = self.mem(ln.ptrs[0], dt)[:dirs * steps * batch * gh].reshape(dirs, -1, gh)
        rt = self.mem(ln.ptrs[1], dt)[:dirs * hid * gh].reshape(dirs, hid, gh).astype(np.float32)
        bias = self.mem(ln.ptrs[2], "f32")[:dirs * 2 * gh].reshape(dirs, 2, gh)
        h0, c0, y, yh, yc = (None if ref is None else self.mem(ref, dt) for ref in ln.ptrs[3:8])
        sig = lambda v: (1.0 / (1.0 + np.exp(-v))).astype(np.float32)  # noqa: E731
        j = np.arange(hid)
        for d in range(dirs):
            wb, rb = bias[d, 0], bias[d, 1]
            rd = rt[d]
            for b in range(batch):
                s0 = d * s_d + b * s_b
                h = h0[s0 + j].astype(np.float32) if h0 is not None else np.zeros(hid, np.float32)
                c = c0[s0 + j].astype(np.float32) if c0 is not None and gates == 4 \
                    else np.zeros(hid, np.float32)
                for s in range(steps):
                    t = steps - 1 - s if reverse or d == 1 else s
                    x = proj[d, t * p_t + b * p_b].astype(np.float32)
                    if gates == 1:
                        h = np.tanh(x + wb + rb + h @ rd)
                    elif gates == 4:
                        g = x + wb + rb + h @ rd
                        c = sig(g[2 * hid:3 * hid]) * c + sig(g[:hid]) * np.tanh(g[3 * hid:])
                        h = sig(g[hid:2 * hid]) * np.tanh(c)
                    else:
                        xz, xr, xh = x[:hid], x[hid:2 * hid], x[2 * hid:]
                        z = sig(xz + wb[:hid] + rb[:hid] + h @ rd[:, :hid])
                        rg = sig(xr + wb[hid:2 * hid] + rb[hid:2 * hid] + h @ rd[:, hid:2 * hid])
                        if lbr:
                            cand = np.tanh(xh + wb[2 * hid:] + rg * (h @ rd[:, 2 * hid:]
                                                                      + rb[2 * hid:]))
                        else:
                            cand = np.tanh(xh + wb[2 * hid:] + (rg * h) @ rd[:, 2 * hid:]
                                           + rb[2 * hid:])
                        h = ((1 - z) * cand + z * h).astype(np.float32)
                    if y is not None:
                        self.store(y, t * y_t + d * y_d + b * y_b + j, h)
                if yh is not None:
                    self.store(yh, s0 + j, h)
                if yc is not None:
                    self.store(yc, s0 + j, c)

    def rows(self, ln: Launch, dt: str) -> None:
        """softmax_lastdim / layernorm_lastdim: one row of L elements at a time."""
        rows, length = ln.ints[:2]
        x = self.mem(ln.ptrs[0], dt)[:rows * length].reshape(rows, length).astype(np.float32)
        if ln.kernel.startswith("softmax"):
            out = _softmax(x * np.float32(ln.floats[0]), bool(ln.ints[2]))
        else:
            mean = x.mean(axis=1, keepdims=True)
            out = (x - mean) / np.sqrt(((x - mean) ** 2).mean(axis=1, keepdims=True)
                                       + ln.floats[0])
            if ln.ptrs[2] is not None:
                out = out * self.mem(ln.ptrs[2], "f32")[:length]
            if ln.ptrs[3] is not None:
                out = out + self.mem(ln.ptrs[3], "f32")[:length]
        self.store(self.mem(ln.ptrs[1], dt), np.arange(rows * length), out.reshape(-1))

    def reduce(self, ln: Launch, dt: str) -> None:
        """reduce_axes: kept loops x reduced loops over the input, one output per kept index."""
        op, _, rk = ln.ints[:3]
        kd, ks = ln.ints[3:3 + rk], ln.ints[3 + MAXR:3 + MAXR + rk]
        rr = ln.ints[3 + 2 * MAXR]
        rd, rs = ln.ints[4 + 2 * MAXR:4 + 2 * MAXR + rr], ln.ints[4 + 3 * MAXR:4 + 3 * MAXR + rr]
        x = self.mem(ln.ptrs[0], dt)
        idx = _index(kd, ks)[:, None] + _index(rd, rs)[None, :]
        v = x[idx].astype(np.float32)
        with np.errstate(all="ignore"):
            if op == 8:  # log-sum-exp, shifted by the (finite) max
                m = v.max(axis=1)
                m = np.where(np.isinf(m), 0, m)
                out = np.log(np.exp(v - m[:, None]).sum(axis=1)) + m
            else:
                pre = {4: np.abs, 5: np.square, 6: np.square}.get(op, lambda u: u)(v)
                acc = {1: np.max, 2: np.min, 3: np.prod}.get(op, np.sum)(pre, axis=1)
                out = {5: np.sqrt, 7: np.log}.get(op, lambda u: u * np.float32(ln.floats[0]))(acc)
        self.store(self.mem(ln.ptrs[1], dt), np.arange(out.size), out.astype(np.float32))

    def softmax_axis(self, ln: Launch, dt: str) -> None:
        rk = ln.ints[0]
        kd, kx, ky = ln.ints[1:1 + rk], ln.ints[6:6 + rk], ln.ints[11:11 + rk]
        length, xl, yl, log = ln.ints[16:20]
        x = self.mem(ln.ptrs[0], dt)
        xi = _index(kd, kx)[:, None] + np.arange(length)[None, :] * xl
        yi = _index(kd, ky)[:, None] + np.arange(length)[None, :] * yl
        out = _softmax(x[xi].astype(np.float32) * np.float32(ln.floats[0]), bool(log))
        self.store(self.mem(ln.ptrs[1], dt), yi.reshape(-1), out.reshape(-1))

    def groupnorm(self, ln: Launch, dt: str) -> None:
        rows, length, hw, cpg, groups, ns, cs, ps, chan_inner = ln.ints[:9]
        n = rows // groups
        x = self.mem(ln.ptrs[0], dt)
        c = groups * cpg
        idx = _index([n, c, hw], [ns, cs, ps]).reshape(n, groups, cpg * hw)
        v = x[idx].astype(np.float32)
        mean = v.mean(axis=2, keepdims=True)
        var = ((v - mean) ** 2).mean(axis=2, keepdims=True)
        out = ((v - mean) / np.sqrt(var + ln.floats[0])).reshape(n, c, hw)
        out = out * self.mem(ln.ptrs[2], "f32")[:c, None] + self.mem(ln.ptrs[3], "f32")[:c, None]
        self.store(self.mem(ln.ptrs[1], dt), idx.reshape(-1), out.reshape(-1))

    def grid_sample(self, ln: Launch, dt: str) -> None:
        from tests.devices.gpu_cases import grid_sample_ref

        n, c, h, w, ho, wo = ln.ints[:6]
        xs, gs, ys = ln.ints[6:10], ln.ints[10:14], ln.ints[14:18]
        nearest, border, align = ln.ints[18:21]
        x = self.mem(ln.ptrs[0], dt)[_index([n, c, h, w], xs)].reshape(n, c, h, w)
        grid = self.mem(ln.ptrs[1], dt)[_index([n, ho, wo, 2], gs)].reshape(n, ho, wo, 2)
        out = grid_sample_ref(x.astype(np.float32), grid.astype(np.float32),
                              "nearest" if nearest else "bilinear",
                              "border" if border else "zeros", align)
        self.store(self.mem(ln.ptrs[2], dt), _index([n, c, ho, wo], ys), out.reshape(-1))

    def pad(self, ln: Launch, dt: str) -> None:
        rank, mode = ln.ints[:2]
        od = ln.ints[2:2 + rank]
        xd, xs = ln.ints[2 + MAXR:2 + MAXR + rank], ln.ints[2 + 2 * MAXR:2 + 2 * MAXR + rank]
        ys = ln.ints[2 + 3 * MAXR:2 + 3 * MAXR + rank]
        beg = ln.ints[2 + 4 * MAXR:2 + 4 * MAXR + rank]
        x = self.mem(ln.ptrs[0], dt)[_index(xd, xs)].reshape(xd).astype(np.float32)
        widths = [(b, o - d - b) for o, d, b in zip(od, xd, beg)]
        assert all(lo >= 0 and hi >= 0 for lo, hi in widths), ln.layer  # crops are views
        if mode == 0:
            out = np.pad(x, widths, constant_values=ln.floats[0])
        else:
            out = np.pad(x, widths, mode=["constant", "reflect", "edge", "wrap"][mode])
        self.store(self.mem(ln.ptrs[1], dt), _index(od, ys), out.reshape(-1))

    def resize(self, ln: Launch, dt: str) -> None:
        n, h, w, c, oh, ow, linear, ctm, nmode, xcs, ycs = ln.ints[:11]
        if linear:
            raise NotImplementedError("linear resizing is not modelled")
        if "_x8_" in ln.kernel:  # 16-byte vectors: the lowering's promise
            assert not linear and dt == "f16", ln.layer
            assert all(v % 8 == 0 for v in (c, xcs, ycs, ln.ptrs[0].byte_offset // 2,
                                            ln.ptrs[1].byte_offset // 2)), ln.layer

        def source(out: int, size: int, scale: float) -> np.ndarray:
            o = np.arange(out, dtype=np.float64)
            x = [(o + 0.5) / scale - 0.5, o / scale,
                 o * (size - 1) / max(out - 1, 1), (o + 0.5) / scale - 0.5][ctm]
            r = [np.ceil(x - 0.5), np.floor(x + 0.5), np.floor(x), np.ceil(x)][nmode]
            return np.clip(r, 0, size - 1).astype(int)

        x = self.nhwc(ln.ptrs[0], dt, n, h, w, c, xcs)
        rows, cols = source(oh, h, ln.floats[0]), source(ow, w, ln.floats[1])
        self.put_nhwc(ln.ptrs[1], dt, x[:, rows][:, :, cols].astype(np.float32), ycs)


def simulate(prog: GpuProgram, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run ``prog`` on the CPU model; returns the graph outputs as the GPU would."""
    return KernelSim(prog).run(feeds)
