"""A tiny .npy reader for the tests (standard library only; numpy is not installed).

    arr = npy.load("logits.npy")
    arr.dtype, arr.shape, arr.data          # '<f4', (2, 26, 374), raw bytes
    arr.values()                            # flat list of Python numbers, C order

Only what the golden files use: format versions 1.0-3.0, little-endian or
byte-sized numeric dtypes and bool, C order.
"""

import ast
import math
import struct

MAGIC = b"\x93NUMPY"

# numpy descr -> struct format character
_FORMATS = {"f4": "f", "f8": "d", "f2": "e", "i8": "q", "i4": "i", "i2": "h", "i1": "b",
            "u8": "Q", "u4": "I", "u2": "H", "u1": "B", "b1": "?"}


class NpyArray:
    def __init__(self, dtype, shape, data):
        self.dtype, self.shape, self.data = dtype, tuple(shape), data

    @property
    def size(self):
        return math.prod(self.shape)

    def values(self):
        fmt = _FORMATS[self.dtype[1:]]
        return list(struct.unpack(f"<{self.size}{fmt}", self.data))


def loads(raw: bytes) -> NpyArray:
    if raw[:6] != MAGIC:
        raise ValueError("not a .npy file")
    major = raw[6]
    if major == 1:
        (hlen,) = struct.unpack_from("<H", raw, 8)
        start = 10
    elif major in (2, 3):
        (hlen,) = struct.unpack_from("<I", raw, 8)
        start = 12
    else:
        raise ValueError(f".npy version {major} not supported")
    header = ast.literal_eval(raw[start:start + hlen].decode("latin1"))
    descr, shape = header["descr"], header["shape"]
    if header.get("fortran_order"):
        raise ValueError("Fortran-order arrays not supported")
    if descr[0] not in "<|" or descr[1:] not in _FORMATS:
        raise ValueError(f"dtype {descr!r} not supported")
    data = raw[start + hlen:]
    want = math.prod(shape) * struct.calcsize(_FORMATS[descr[1:]])
    if len(data) != want:
        raise ValueError(f"{len(data)} data bytes, expected {want}")
    return NpyArray(descr, shape, data)


def load(path) -> NpyArray:
    with open(path, "rb") as f:
        return loads(f.read())
