"""Reduced-precision weights for ``python3 -m dalle.convert --dtype``.

Pure Python (standard library only). Every function takes and returns raw
little-endian bytes, C order, as the bundle stores them
(docs/bundle-format.md, "Reduced-precision weights"):

- :func:`to_bf16`: float32 -> bfloat16, round to nearest, ties to even.
- :func:`to_f16`: float32 -> IEEE binary16, round to nearest, ties to even
  (``struct``'s ``e`` format), subnormals kept.
- :func:`quantize_int8`: float32 [rows][cols] -> int8 [rows][cols] plus one
  float32 scale per block of ``block`` consecutive elements of a row
  (symmetric: scale = max|w| / 127 of the block, rounded to float32;
  q = round-half-even(w / scale) clamped to [-127, 127]; an all-zero block
  has scale 0 and q = 0). The library computes with ``float32(q * scale)``.

NaN stays NaN and an infinity stays infinite in bf16 and f16; a finite value
that would round to infinity (beyond the type's range) raises
:class:`LowpError`, as does any non-finite value for int8, naming the
element. Speed: a few million elements per second (pure Python); a
DALLE-pytorch model of 100 M weights takes about a minute for bf16 and a few
for int8.
"""

from __future__ import annotations

import array
import math
import struct
import sys

__all__ = ["LowpError", "INT8_BLOCK", "to_bf16", "to_f16", "quantize_int8", "from_bf16",
           "from_f16", "dequantize_int8", "f32_array"]

#: Elements of a row per int8 scale. 32 costs one float32 scale per 32
#: bytes (9 bits per weight in all, 1.125 bytes) while a block stays short
#: enough that one large weight does not flatten many neighbours to 0; it
#: is a multiple of the 8 lanes of the library's AVX2 kernel.
INT8_BLOCK = 32

_CHUNK = 1 << 16  # elements converted per step (bounded temporary lists)


class LowpError(ValueError):
    """A value that the chosen reduced type cannot hold."""


def f32_array(data) -> array.array:
    """float32 bytes (little-endian) as an array of Python floats."""
    a = array.array("f")
    a.frombytes(bytes(data))
    if sys.byteorder == "big":
        a.byteswap()
    return a


def _u32_array(data) -> array.array:
    a = array.array("I")
    assert a.itemsize == 4
    a.frombytes(bytes(data))
    if sys.byteorder == "big":
        a.byteswap()
    return a


def _le(a: array.array) -> bytes:
    if sys.byteorder == "big":
        a = array.array(a.typecode, a)
        a.byteswap()
    return a.tobytes()


def to_bf16(data, what: str = "tensor") -> bytes:
    """float32 bytes -> bfloat16 bytes (round to nearest, ties to even)."""
    u = _u32_array(data)
    out = array.array("H")
    for c0 in range(0, len(u), _CHUNK):
        part = u[c0:c0 + _CHUNK]
        # NaN: keep sign and top mantissa bits, force the quiet bit (a NaN
        # whose payload is all in the low half must not become infinity);
        # else add 0x7FFF plus the lowest kept bit and truncate: RNE.
        res = [(x >> 16) | 0x40 if (x & 0x7FFFFFFF) > 0x7F800000
               else (x + 0x7FFF + ((x >> 16) & 1)) >> 16 for x in part]
        out.extend(res)
        if 0x7F80 not in res and 0xFF80 not in res:
            continue
        for i, (x, h) in enumerate(zip(part, res)):
            if (h & 0x7FFF) == 0x7F80 and (x & 0x7FFFFFFF) != 0x7F800000:
                raise LowpError(f"{what}: element {c0 + i} "
                                f"({struct.unpack('<f', struct.pack('<I', x))[0]!r}) is "
                                "outside the bfloat16 range")
    return _le(out)


def to_f16(data, what: str = "tensor") -> bytes:
    """float32 bytes -> IEEE binary16 bytes (round to nearest, ties to even)."""
    f = f32_array(data)
    parts = []
    for c0 in range(0, len(f), _CHUNK):
        part = f[c0:c0 + _CHUNK]
        try:
            parts.append(struct.pack(f"<{len(part)}e", *part))
        except OverflowError:
            i = next(i for i, x in enumerate(part) if math.isfinite(x) and abs(x) >= 65520.0)
            raise LowpError(f"{what}: element {c0 + i} ({part[i]!r}) is outside the float16 "
                            "range (|x| < 65520)") from None
    return b"".join(parts)


def _f32(x: float) -> float:
    """x rounded to float32."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def quantize_int8(data, rows: int, cols: int, block: int = INT8_BLOCK,
                  what: str = "tensor"):
    """float32 [rows][cols] -> (int8 bytes [rows][cols], float32 scale bytes
    [rows][ceil(cols / block)])."""
    f = f32_array(data)
    if len(f) != rows * cols:
        raise ValueError(f"{what}: {len(f)} elements for [{rows}][{cols}]")
    q = array.array("b", bytes(rows * cols))
    scales = array.array("f")
    for r in range(rows):
        base = r * cols
        for b0 in range(0, cols, block):
            vals = f[base + b0:base + min(b0 + block, cols)]
            amax = 0.0
            for i, v in enumerate(vals):
                if not math.isfinite(v):
                    raise LowpError(f"{what}: element {base + b0 + i} ({v!r}) is not finite: "
                                    "int8 cannot hold it")
                if abs(v) > amax:
                    amax = abs(v)
            scale = _f32(amax / 127.0)
            scales.append(scale)
            if scale == 0.0:
                continue  # an all-zero (or all-tiny) block: q = 0
            for i, v in enumerate(vals):
                k = round(v / scale)  # half to even
                q[base + b0 + i] = 127 if k > 127 else -127 if k < -127 else k
    return q.tobytes(), _le(scales)


# ---- the inverse mappings (what the library computes with), for tests and --info

def from_bf16(data) -> list:
    h = array.array("H")
    h.frombytes(bytes(data))
    if sys.byteorder == "big":
        h.byteswap()
    return list(struct.unpack(f"<{len(h)}f", struct.pack(f"<{len(h)}I", *[x << 16 for x in h])))


def from_f16(data) -> list:
    n = len(data) // 2
    return list(struct.unpack(f"<{n}e", bytes(data)))


def dequantize_int8(qdata, sdata, rows: int, cols: int, block: int = INT8_BLOCK) -> list:
    """float32(q * scale) of every element, as Python floats."""
    q = array.array("b")
    q.frombytes(bytes(qdata))
    s = f32_array(sdata)
    nb = -(-cols // block)
    return [_f32(q[r * cols + c] * s[r * nb + c // block]) for r in range(rows)
            for c in range(cols)]
