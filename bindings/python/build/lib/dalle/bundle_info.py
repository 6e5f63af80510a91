"""Read-only inspection of a bundle through the C reader: ``dalle.Bundle``.

    with dalle.Bundle("model.dalle") as b:
        b.kind                     # "dalle"
        b.meta["dalle.depth"]      # metadata, as Python values
        [t.name for t in b.tensors]
        b.read("vae.codebook.weight")   # numpy array, or (bytes, TensorInfo)
        b.verify()                 # decode everything, check every checksum

(The pure-Python reader of the converter is :mod:`dalle.bundle`; this one
goes through libdalle, so it checks exactly what the library checks.)
"""

from __future__ import annotations

import ctypes
from collections import namedtuple
from ctypes import byref, c_char_p, c_double, c_int, c_int64

from . import _lib
from ._lib import DalleError, Handle, Status

__all__ = ["Bundle", "TensorInfo", "DTYPES", "CODECS"]

DTYPES = {0: "f32", 1: "f16", 2: "bf16", 3: "i8", 4: "u8", 5: "i32", 6: "i64"}
CODECS = {0: "raw", 1: "zstd", 2: "alias"}
_NUMPY_DTYPES = {"f32": "<f4", "f16": "<f2", "i8": "i1", "u8": "u1", "i32": "<i4",
                 "i64": "<i8"}

TensorInfo = namedtuple("TensorInfo", "index name dtype shape numel nbytes stored_bytes codec "
                                      "alias_of alias_offset")
TensorInfo.__doc__ = """One tensor of a bundle: dtype is "f32", "f16", ...; shape a tuple;
codec "raw", "zstd" or "alias" (then alias_of is the target's name)."""


def read_meta(L, b) -> dict:
    """All metadata of the bundle pointer b as a dict of Python values
    (int, float, bool, str, or lists of them)."""
    meta = {}
    n = L.dalle_bundle_n_meta(b)
    for i in range(n):
        key, typ, count = c_char_p(), c_int(), c_int64()
        _lib.check(L.dalle_bundle_meta_info(b, i, byref(key), byref(typ), byref(count)))
        k = key.value
        name = k.decode("utf-8", "replace")
        t = typ.value
        if t in (1, 3):
            v = c_int64()
            _lib.check(L.dalle_bundle_meta_i64(b, k, byref(v)))
            meta[name] = bool(v.value) if t == 3 else v.value
        elif t == 2:
            v = c_double()
            _lib.check(L.dalle_bundle_meta_f64(b, k, byref(v)))
            meta[name] = v.value
        elif t == 4:
            v = c_char_p()
            _lib.check(L.dalle_bundle_meta_str(b, k, byref(v)))
            meta[name] = (v.value or b"").decode("utf-8", "replace")
        elif t in (5, 6, 7):
            cnt = max(count.value, 0)
            ctype = {5: c_int64, 6: c_double, 7: c_char_p}[t]
            fn = {5: L.dalle_bundle_meta_i64_array, 6: L.dalle_bundle_meta_f64_array,
                  7: L.dalle_bundle_meta_str_array}[t]
            buf = (ctype * max(cnt, 1))()
            got = c_int64()
            _lib.check(fn(b, k, buf, cnt, byref(got)))
            vals = list(buf[:min(cnt, got.value)])
            if t == 7:
                vals = [(s or b"").decode("utf-8", "replace") for s in vals]
            meta[name] = vals
        else:
            meta[name] = None  # a type newer than this binding
    return meta


def read_tensors(L, b) -> list:
    infos = []
    n = L.dalle_bundle_n_tensors(b)
    raw = []
    for i in range(n):
        ti = _lib.TensorInfo()
        _lib.check(L.dalle_bundle_tensor_info(b, i, byref(ti)))
        raw.append(ti)
    names = [(t.name or b"").decode("utf-8", "replace") for t in raw]
    for i, t in enumerate(raw):
        infos.append(TensorInfo(
            index=i, name=names[i], dtype=DTYPES.get(t.dtype, str(t.dtype)),
            shape=tuple(t.dims[:t.ndim]), numel=t.numel, nbytes=t.nbytes,
            stored_bytes=t.stored_bytes, codec=CODECS.get(t.codec, str(t.codec)),
            alias_of=names[t.alias_of] if 0 <= t.alias_of < n else None,
            alias_offset=t.alias_offset))
    return infos


class Bundle(Handle):
    """A weight bundle opened read-only with libdalle's reader.

    Attributes: ``path``, ``kind`` ("dalle", "dvae", "openai_dvae", "vqgan",
    "clip", "openai_clip", "tokenizer"), ``version_minor``, ``meta`` (dict),
    ``tensors`` (list of :class:`TensorInfo`).

    Thread safety: the C bundle may be read from any number of threads; this
    object still serialises its calls (cheap, and simpler).
    """

    _what = "Bundle"

    def __init__(self, path):
        super().__init__()
        L = _lib.lib()
        self.path = path
        h = _lib.BundleP()
        _lib.check(L.dalle_bundle_open(_lib.fspath(path), byref(h)))
        self._h = h
        self.kind = (L.dalle_bundle_kind(h) or b"").decode()
        self.version_minor = L.dalle_bundle_version_minor(h)
        self.meta = read_meta(L, h)
        self.tensors = read_tensors(L, h)
        self._by_name = {t.name: t for t in self.tensors}

    def _free(self, h):
        _lib.lib().dalle_bundle_close(h)

    def __repr__(self):
        state = "closed" if self.closed else f"{len(self.tensors)} tensors"
        return f"<dalle.Bundle {self.path!r} kind={self.kind!r} {state}>"

    def __contains__(self, name):
        return name in self._by_name

    def tensor(self, name) -> TensorInfo:
        """The TensorInfo of `name` (KeyError when absent)."""
        return self._by_name[name]

    def read_bytes(self, name) -> bytes:
        """The decoded bytes of tensor `name` (little-endian, its own dtype),
        checksums checked."""
        t = self._by_name.get(name)
        if t is None:
            raise DalleError(Status.NOT_FOUND, f"{self.path}: no tensor '{name}'")
        buf = ctypes.create_string_buffer(max(int(t.nbytes), 1))
        with self._use() as h:
            self._check(_lib.lib().dalle_bundle_read_tensor(h, t.index, buf, len(buf)), h)
        return buf.raw[:t.nbytes]

    def read(self, name):
        """Tensor `name` as a numpy array (when numpy is in use and knows the
        dtype), else as the nested list of its values (bf16: raw bytes)."""
        from . import _arrays
        import array as _array
        t = self.tensor(name) if name in self._by_name else None
        data = self.read_bytes(name)
        if t is None:  # pragma: no cover - read_bytes raised
            return data
        np = _arrays.numpy()
        if np is not None and t.dtype in _NUMPY_DTYPES:
            return np.frombuffer(data, dtype=_NUMPY_DTYPES[t.dtype]).reshape(t.shape).copy()
        codes = {"f32": "f", "i8": "b", "u8": "B", "i32": "i", "i64": "q"}
        if t.dtype in codes:
            a = _array.array(codes[t.dtype])
            a.frombytes(data)
            import sys
            if sys.byteorder == "big":
                a.byteswap()
            return _arrays.nest(a, t.shape) if t.shape else a[0]
        if t.dtype == "f16":
            import struct
            vals = list(struct.unpack(f"<{t.numel}e", data))
            return _arrays.nest(vals, t.shape) if t.shape else vals[0]
        return data

    def verify(self):
        """Decode every tensor once and check every checksum (DalleError
        DALLE_ERR_CHECKSUM on a mismatch)."""
        with self._use() as h:
            self._check(_lib.lib().dalle_bundle_verify(h), h)
