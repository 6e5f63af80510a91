"""Write and read libdalle weight bundles (docs/bundle-format.md, version 1.0).

Writer::

    w = BundleWriter("dvae")
    w.set_str("general.source", "vae.pt (DiscreteVAE)")
    w.set_i64("vae.image_size", 64)
    w.add_tensor("vae.codebook.weight", "f32", [256, 64], data)   # bytes, C order
    w.add_alias("vae.tied", "vae.codebook.weight", [64], element_offset=0)
    w.write("out.dalle")

Reader (validates everything the spec's "What a reader must check" lists;
payloads are checked when read, or all at once with :meth:`Bundle.verify`)::

    b = Bundle.open("out.dalle")
    b.kind, b.meta["vae.image_size"], b.tensor("vae.codebook.weight").shape
    raw = b.read("vae.codebook.weight")          # decoded bytes

Errors are :class:`BundleError` subclasses mirroring the C library's status
codes: :class:`FormatError` (DALLE_ERR_FORMAT), :class:`VersionError`
(DALLE_ERR_VERSION) and :class:`ChecksumError` (DALLE_ERR_CHECKSUM).

zstd comes from the system's libzstd through ctypes: Python 3.11 has no zstd
module and the project allows no third-party packages.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
import re
import struct
import zlib

__all__ = [
    "BundleError", "FormatError", "VersionError", "ChecksumError",
    "BundleWriter", "Bundle", "TensorEntry", "DTYPES", "KINDS", "META_TYPES",
    "zstd_compress", "zstd_decompress",
]

MAGIC = b"DALLEBND"
VERSION_MAJOR = 1
VERSION_MINOR = 0
HEADER_SIZE = 128
ALIGN = 64

# dtype name -> (code, bytes per element)
DTYPES = {"f32": (0, 4), "f16": (1, 2), "bf16": (2, 2), "i8": (3, 1),
          "u8": (4, 1), "i32": (5, 4), "i64": (6, 8)}
_DTYPE_BY_CODE = {code: (name, size) for name, (code, size) in DTYPES.items()}

CODEC_RAW, CODEC_ZSTD, CODEC_ALIAS = 0, 1, 2
CODEC_NAMES = {CODEC_RAW: "raw", CODEC_ZSTD: "zstd", CODEC_ALIAS: "alias"}

# metadata value types
META_I64, META_F64, META_BOOL, META_STR, META_I64_ARRAY, META_F64_ARRAY, META_STR_ARRAY = range(1, 8)
META_TYPES = {META_I64: "i64", META_F64: "f64", META_BOOL: "bool", META_STR: "string",
              META_I64_ARRAY: "i64 array", META_F64_ARRAY: "f64 array",
              META_STR_ARRAY: "string array"}

KINDS = ("dalle", "dvae", "openai_dvae", "vqgan", "clip", "openai_clip", "tokenizer")

MAX_META_COUNT = 65536
MAX_TENSOR_COUNT = 1048576
MAX_STRING = 16 * 1024 * 1024
MAX_ARRAY = 1024 * 1024
MAX_NDIM = 8
MAX_TENSOR_BYTES = 1 << 40
ZSTD_MAX_RATIO = 32768
ZSTD_SLACK = 1 << 20

_KEY_RE = re.compile(rb"[A-Za-z0-9_.\-]{1,255}\Z")
_NAME_RE = re.compile(rb"[A-Za-z0-9_.:/\-]{1,255}\Z")

_HEADER = struct.Struct("<8sHHIQQQIIQQIIQQ36sI")
assert _HEADER.size == HEADER_SIZE


class BundleError(Exception):
    """A bundle that cannot be written or read; ``code`` names the C status."""
    code = "DALLE_ERR_FORMAT"


class FormatError(BundleError):
    code = "DALLE_ERR_FORMAT"


class VersionError(BundleError):
    code = "DALLE_ERR_VERSION"


class ChecksumError(BundleError):
    code = "DALLE_ERR_CHECKSUM"


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


# ---------------------------------------------------------------- zstd (ctypes)

class _Zstd:
    """The few libzstd calls the format needs, loaded once on first use."""

    ZSTD_c_compressionLevel = 100
    ZSTD_c_contentSizeFlag = 200
    ZSTD_c_checksumFlag = 201
    CONTENTSIZE_UNKNOWN = (1 << 64) - 1
    CONTENTSIZE_ERROR = (1 << 64) - 2
    _lib = None

    @classmethod
    def lib(cls):
        if cls._lib is None:
            names = ["libzstd.so.1", ctypes.util.find_library("zstd"), "libzstd.dylib", "zstd.dll"]
            for name in filter(None, names):
                try:
                    lib = ctypes.CDLL(name)
                    break
                except OSError:
                    continue
            else:
                raise BundleError("libzstd not found (install libzstd1 / zstd)")
            size_t, c_void_p, c_int = ctypes.c_size_t, ctypes.c_void_p, ctypes.c_int
            lib.ZSTD_createCCtx.restype = c_void_p
            lib.ZSTD_freeCCtx.argtypes = [c_void_p]
            lib.ZSTD_CCtx_setParameter.argtypes = [c_void_p, c_int, c_int]
            lib.ZSTD_CCtx_setParameter.restype = size_t
            lib.ZSTD_compress2.argtypes = [c_void_p, c_void_p, size_t, c_void_p, size_t]
            lib.ZSTD_compress2.restype = size_t
            lib.ZSTD_compressBound.argtypes = [size_t]
            lib.ZSTD_compressBound.restype = size_t
            lib.ZSTD_isError.argtypes = [size_t]
            lib.ZSTD_isError.restype = ctypes.c_uint
            lib.ZSTD_getErrorName.argtypes = [size_t]
            lib.ZSTD_getErrorName.restype = ctypes.c_char_p
            lib.ZSTD_decompress.argtypes = [c_void_p, size_t, c_void_p, size_t]
            lib.ZSTD_decompress.restype = size_t
            lib.ZSTD_getFrameContentSize.argtypes = [c_void_p, size_t]
            lib.ZSTD_getFrameContentSize.restype = ctypes.c_ulonglong
            lib.ZSTD_findFrameCompressedSize.argtypes = [c_void_p, size_t]
            lib.ZSTD_findFrameCompressedSize.restype = size_t
            lib.ZSTD_maxCLevel.restype = c_int
            cls._lib = lib
        return cls._lib

    @classmethod
    def check(cls, ret: int, what: str) -> int:
        lib = cls.lib()
        if lib.ZSTD_isError(ret):
            raise BundleError(f"zstd {what}: {lib.ZSTD_getErrorName(ret).decode()}")
        return ret


def zstd_compress(data: bytes, level: int = 3) -> bytes:
    """One zstd frame of ``data`` with its content size and checksum set."""
    lib = _Zstd.lib()
    cctx = lib.ZSTD_createCCtx()
    if not cctx:
        raise BundleError("zstd: out of memory")
    try:
        for param, value in ((_Zstd.ZSTD_c_compressionLevel, level),
                             (_Zstd.ZSTD_c_contentSizeFlag, 1),
                             (_Zstd.ZSTD_c_checksumFlag, 1)):
            _Zstd.check(lib.ZSTD_CCtx_setParameter(cctx, param, value), "setParameter")
        bound = lib.ZSTD_compressBound(len(data))
        dst = ctypes.create_string_buffer(bound)
        n = _Zstd.check(lib.ZSTD_compress2(cctx, dst, bound, data, len(data)), "compress")
        return dst.raw[:n]
    finally:
        lib.ZSTD_freeCCtx(cctx)


def zstd_frame_info(frame: bytes):
    """(content size or None, has checksum, compressed size of the first frame)."""
    lib = _Zstd.lib()
    size = lib.ZSTD_getFrameContentSize(frame, len(frame))
    if size == _Zstd.CONTENTSIZE_ERROR:
        raise BundleError("not a zstd frame")
    used = lib.ZSTD_findFrameCompressedSize(frame, len(frame))
    if lib.ZSTD_isError(used):
        raise BundleError(f"zstd frame: {lib.ZSTD_getErrorName(used).decode()}")
    # Frame_Header_Descriptor (RFC 8878 3.1.1.1.1): bit 2 = Content_Checksum_flag
    has_checksum = len(frame) > 4 and bool(frame[4] & 0x04)
    return (None if size == _Zstd.CONTENTSIZE_UNKNOWN else size), has_checksum, used


def zstd_decompress(frame: bytes, size: int) -> bytes:
    """Decode one frame into exactly ``size`` bytes (libzstd checks its checksum)."""
    lib = _Zstd.lib()
    dst = ctypes.create_string_buffer(max(size, 1))
    n = _Zstd.check(lib.ZSTD_decompress(dst, size, frame, len(frame)), "decompress")
    if n != size:
        raise BundleError(f"zstd frame decoded to {n} bytes, expected {size}")
    return dst.raw[:size]


# ---------------------------------------------------------------- metadata

def _pack_str(s: str) -> bytes:
    b = s.encode("utf-8")
    if b"\0" in b or len(b) > MAX_STRING:
        raise BundleError(f"string value {s[:40]!r}...: NUL byte or longer than 16 MiB")
    return struct.pack("<I", len(b)) + b


def _encode_meta(key: str, mtype: int, value) -> bytes:
    kb = key.encode("ascii", "replace")
    if not _KEY_RE.match(kb):
        raise BundleError(f"metadata key {key!r}: 1..255 characters of [A-Za-z0-9_.-]")
    out = struct.pack("<H", len(kb)) + kb + struct.pack("<B", mtype)
    if mtype == META_I64:
        out += struct.pack("<q", value)
    elif mtype == META_F64:
        out += struct.pack("<d", value)
    elif mtype == META_BOOL:
        out += struct.pack("<B", 1 if value else 0)
    elif mtype == META_STR:
        out += _pack_str(value)
    else:
        if len(value) > MAX_ARRAY:
            raise BundleError(f"metadata {key}: more than 1 Mi elements")
        out += struct.pack("<I", len(value))
        if mtype == META_I64_ARRAY:
            out += struct.pack(f"<{len(value)}q", *value)
        elif mtype == META_F64_ARRAY:
            out += struct.pack(f"<{len(value)}d", *value)
        elif mtype == META_STR_ARRAY:
            out += b"".join(_pack_str(v) for v in value)
        else:
            raise BundleError(f"metadata {key}: unknown type {mtype}")
    return out


def infer_meta_type(value) -> int:
    """The metadata type of a Python value (bool before int: bool is an int)."""
    if isinstance(value, bool):
        return META_BOOL
    if isinstance(value, int):
        return META_I64
    if isinstance(value, float):
        return META_F64
    if isinstance(value, str):
        return META_STR
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, str) for v in value) and value:
            return META_STR_ARRAY
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return META_I64_ARRAY
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return META_F64_ARRAY
    raise BundleError(f"no metadata type for {value!r}")


# ---------------------------------------------------------------- writer

class _PendingTensor:
    __slots__ = ("name", "dtype", "shape", "data", "codec", "target", "element_offset")

    def __init__(self, name, dtype, shape, data, codec, target=None, element_offset=0):
        self.name, self.dtype, self.shape, self.data = name, dtype, shape, data
        self.codec, self.target, self.element_offset = codec, target, element_offset


class BundleWriter:
    """Collects metadata and tensors, then writes the file in one pass.

    Tensor data may be given as bytes or as a zero-argument callable that
    returns them: :meth:`write` then fetches, encodes and writes one tensor at
    a time, so converting a large checkpoint does not hold it all in memory.

    ``level`` is the zstd level; 0 stores every tensor raw. A tensor is also
    stored raw when zstd saves less than 1/16 of it: a raw payload can be used
    in place from a memory map, which beats a marginal size gain.
    """

    def __init__(self, kind: str, level: int = 3):
        if kind not in KINDS:
            raise BundleError(f"unknown bundle kind {kind!r} (one of {', '.join(KINDS)})")
        self.level = level
        self._meta: dict = {}
        self._tensors: list = []
        self._index: dict = {}
        self.set_str("general.kind", kind)

    # -- metadata
    def set(self, key: str, value, mtype: int | None = None) -> None:
        """Set a metadata entry, inferring its type from the value if not given."""
        if mtype is None:
            mtype = infer_meta_type(value)
        if mtype in (META_I64_ARRAY, META_F64_ARRAY, META_STR_ARRAY):
            value = list(value)
        if mtype == META_F64_ARRAY:
            value = [float(v) for v in value]
        if mtype == META_F64:
            value = float(value)
        _encode_meta(key, mtype, value)  # validates now, so errors name the call site
        self._meta[key] = (mtype, value)

    def set_i64(self, key, v): self.set(key, int(v), META_I64)
    def set_f64(self, key, v): self.set(key, float(v), META_F64)
    def set_bool(self, key, v): self.set(key, bool(v), META_BOOL)
    def set_str(self, key, v): self.set(key, str(v), META_STR)
    def set_i64_array(self, key, v): self.set(key, [int(x) for x in v], META_I64_ARRAY)
    def set_f64_array(self, key, v): self.set(key, [float(x) for x in v], META_F64_ARRAY)
    def set_str_array(self, key, v): self.set(key, [str(x) for x in v], META_STR_ARRAY)

    def has_meta(self, key: str) -> bool:
        return key in self._meta

    def get_meta(self, key: str, default=None):
        """A metadata value set earlier (or ``default``)."""
        return self._meta[key][1] if key in self._meta else default

    # -- tensors
    def _check_name(self, name, dtype, shape):
        nb = name.encode("ascii", "replace")
        if not _NAME_RE.match(nb):
            raise BundleError(f"tensor name {name!r}: 1..255 characters of [A-Za-z0-9_.:/-]")
        if name in self._index:
            raise BundleError(f"tensor {name!r} added twice")
        if dtype not in DTYPES:
            raise BundleError(f"tensor {name}: unknown dtype {dtype!r}")
        if len(shape) > MAX_NDIM or any(int(d) < 1 for d in shape):
            raise BundleError(f"tensor {name}: shape {list(shape)} (at most 8 dims, each >= 1)")
        if math.prod(shape) * DTYPES[dtype][1] > MAX_TENSOR_BYTES:
            raise BundleError(f"tensor {name}: larger than 2^40 bytes")

    def add_tensor(self, name: str, dtype: str, shape, data) -> int:
        """Add a tensor; ``data`` is its bytes (C order) or a callable returning them."""
        shape = tuple(int(d) for d in shape)
        self._check_name(name, dtype, shape)
        if isinstance(data, (bytes, bytearray, memoryview)):
            self._check_size(name, dtype, shape, data)
        self._index[name] = len(self._tensors)
        self._tensors.append(_PendingTensor(name, dtype, shape, data, None))
        return self._index[name]

    def add_alias(self, name: str, target: str, shape, element_offset: int = 0) -> int:
        """Add ``name`` as a contiguous view into the earlier tensor ``target``."""
        shape = tuple(int(d) for d in shape)
        if target not in self._index:
            raise BundleError(f"alias {name}: target {target!r} not added yet")
        t = self._tensors[self._index[target]]
        if t.codec == CODEC_ALIAS:
            raise BundleError(f"alias {name}: target {target!r} is itself an alias")
        self._check_name(name, t.dtype, shape)
        if element_offset < 0 or element_offset + math.prod(shape) > math.prod(t.shape):
            raise BundleError(f"alias {name}: elements [{element_offset}, "
                              f"{element_offset + math.prod(shape)}) outside {target} "
                              f"of {math.prod(t.shape)} elements")
        self._index[name] = len(self._tensors)
        self._tensors.append(_PendingTensor(name, t.dtype, shape, None, CODEC_ALIAS,
                                            self._index[target], int(element_offset)))
        return self._index[name]

    @staticmethod
    def _check_size(name, dtype, shape, data):
        want = math.prod(shape) * DTYPES[dtype][1]
        if len(data) != want:
            raise BundleError(f"tensor {name}: {len(data)} bytes for shape {list(shape)} "
                              f"{dtype} ({want} bytes expected)")

    def _encode(self, t: _PendingTensor):
        data = t.data() if callable(t.data) else t.data
        self._check_size(t.name, t.dtype, t.shape, data)
        data = bytes(data)
        crc = zlib.crc32(data)
        if self.level > 0 and len(data) >= 64:
            frame = zstd_compress(data, self.level)
            if len(frame) < len(data) - len(data) // 16:
                return CODEC_ZSTD, frame, crc
        return CODEC_RAW, data, crc

    def write(self, path) -> None:
        """Write the bundle to ``path`` (through a temporary file, then renamed)."""
        if "general.source" not in self._meta:
            raise BundleError("metadata general.source is required")
        if len(self._meta) > MAX_META_COUNT or len(self._tensors) > MAX_TENSOR_COUNT:
            raise BundleError("too many metadata entries or tensors")
        meta = b"".join(_encode_meta(k, mt, v) for k, (mt, v) in self._meta.items())
        dir_size = sum(self._dir_entry_size(t) for t in self._tensors)
        meta_offset = HEADER_SIZE
        dir_offset = meta_offset + len(meta)
        data_offset = _align(dir_offset + dir_size)

        path = os.fspath(path)
        tmp = path + ".tmp"
        try:
            self._write_to(tmp, meta, dir_size, meta_offset, dir_offset, data_offset)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        os.replace(tmp, path)

    def _write_to(self, tmp, meta, dir_size, meta_offset, dir_offset, data_offset):
        with open(tmp, "wb") as f:
            f.write(b"\0" * data_offset)  # header, meta and directory come last
            locations = []
            pos = 0
            for t in self._tensors:
                if t.codec == CODEC_ALIAS:
                    locations.append(None)
                    continue
                codec, payload, crc = self._encode(t)
                t.codec = codec
                f.write(payload)
                locations.append((pos, len(payload), crc))
                pad = _align(len(payload)) - len(payload)
                f.write(b"\0" * pad)
                pos += len(payload) + pad
            # Nothing may follow the data area, so trim the last payload's padding.
            data_size = max((off + size for off, size, _ in filter(None, locations)), default=0)
            f.truncate(data_offset + data_size)
            directory = b"".join(self._dir_entry(t, loc) for t, loc in zip(self._tensors, locations))
            assert len(directory) == dir_size
            header = _HEADER.pack(MAGIC, VERSION_MAJOR, VERSION_MINOR, HEADER_SIZE,
                                  data_offset + data_size, meta_offset, len(meta),
                                  len(self._meta), zlib.crc32(meta), dir_offset, dir_size,
                                  len(self._tensors), zlib.crc32(directory), data_offset,
                                  data_size, b"\0" * 36, 0)
            header = header[:124] + struct.pack("<I", zlib.crc32(header[:124]))
            f.seek(0)
            f.write(header + meta + directory)

    @staticmethod
    def _dir_entry_size(t) -> int:
        name_len = len(t.name.encode("ascii"))
        loc = 12 if t.codec == CODEC_ALIAS else 20
        return 2 + name_len + 4 + 8 * len(t.shape) + loc

    @staticmethod
    def _dir_entry(t, loc) -> bytes:
        nb = t.name.encode("ascii")
        out = struct.pack("<H", len(nb)) + nb
        out += struct.pack("<BBBB", DTYPES[t.dtype][0], len(t.shape), t.codec, 0)
        out += struct.pack(f"<{len(t.shape)}Q", *t.shape)
        if t.codec == CODEC_ALIAS:
            out += struct.pack("<IQ", t.target, t.element_offset)
        else:
            out += struct.pack("<QQI", *loc)
        return out


# ---------------------------------------------------------------- reader

class TensorEntry:
    """One directory entry. ``offset`` is relative to the data area."""
    __slots__ = ("index", "name", "dtype", "shape", "codec", "offset", "stored_size",
                 "crc32", "target", "element_offset")

    def __init__(self, **kw):
        for k in self.__slots__:
            setattr(self, k, kw.get(k))

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * DTYPES[self.dtype][1]

    def __repr__(self):
        return f"TensorEntry({self.name!r}, {self.dtype}, {list(self.shape)}, {CODEC_NAMES[self.codec]})"


class _Cursor:
    """Strict little-endian parsing inside one section; errors name it."""

    def __init__(self, buf: bytes, section: str, path: str):
        self.buf, self.pos, self.section, self.path = buf, 0, section, path

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise FormatError(f"{self.path}: {self.section}: {what} runs past the end of the section")
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def unpack(self, fmt: str, what: str):
        s = struct.Struct("<" + fmt)
        return s.unpack(self.take(s.size, what))


class Bundle:
    """A validated bundle (header, metadata and directory checked on open).

    ``meta`` maps keys to Python values (int, float, bool, str, lists);
    ``meta_types`` maps keys to their type codes; ``tensors`` is the directory
    in file order. :meth:`read` decodes a tensor and checks its checksums.
    """

    def __init__(self, data: bytes, path: str = "<memory>"):
        self.path = path
        self._data = data
        self._parse()

    @classmethod
    def open(cls, path) -> "Bundle":
        path = os.fspath(path)
        with open(path, "rb") as f:
            return cls(f.read(), path)

    # -- validation on open (spec checks 1-6)
    def _fail(self, exc, msg):
        raise exc(f"{self.path}: {msg}")

    def _parse(self):
        d = self._data
        if len(d) < HEADER_SIZE:
            self._fail(FormatError, f"header: file of {len(d)} bytes is shorter than the 128-byte header")
        (magic, major, minor, header_size, file_size, meta_offset, meta_size, meta_count,
         meta_crc, dir_offset, dir_size, tensor_count, dir_crc, data_offset, data_size,
         _reserved, header_crc) = _HEADER.unpack_from(d, 0)
        if magic != MAGIC:
            self._fail(FormatError, f"header: bad magic {magic!r} (not a libdalle bundle)")
        if major != VERSION_MAJOR:
            self._fail(VersionError, f"header: bundle version {major}.{minor}, this reader supports {VERSION_MAJOR}.x")
        if header_size != HEADER_SIZE:
            self._fail(FormatError, f"header: header_size {header_size}, expected 128")
        if zlib.crc32(d[:124]) != header_crc:
            self._fail(ChecksumError, "header: crc32 mismatch")
        if file_size != len(d):
            self._fail(FormatError, f"header: file_size {file_size} but the file has {len(d)} bytes (truncated or extended)")
        self.version = (major, minor)
        if meta_offset != HEADER_SIZE:
            self._fail(FormatError, f"header: meta_offset {meta_offset}, expected 128")
        if dir_offset != meta_offset + meta_size:
            self._fail(FormatError, "header: tensor directory does not follow the metadata")
        if dir_offset + dir_size > len(d):
            self._fail(FormatError, "header: tensor directory lies outside the file")
        if data_offset % ALIGN or data_offset != _align(dir_offset + dir_size):
            self._fail(FormatError, f"header: data_offset {data_offset} is not the first multiple of 64 after the directory")
        if data_offset + data_size != file_size:
            self._fail(FormatError, "header: data area does not end at the end of the file")
        if meta_count > MAX_META_COUNT:
            self._fail(FormatError, f"header: meta_count {meta_count} > 65536")
        if tensor_count > MAX_TENSOR_COUNT:
            self._fail(FormatError, f"header: tensor_count {tensor_count} > 1048576")
        meta_bytes = d[meta_offset:meta_offset + meta_size]
        dir_bytes = d[dir_offset:dir_offset + dir_size]
        if zlib.crc32(meta_bytes) != meta_crc:
            self._fail(ChecksumError, "metadata: crc32 mismatch")
        if zlib.crc32(dir_bytes) != dir_crc:
            self._fail(ChecksumError, "tensor directory: crc32 mismatch")
        self.data_offset, self.data_size = data_offset, data_size
        self._parse_meta(meta_bytes, meta_count)
        self._parse_dir(dir_bytes, tensor_count)
        kind = self.meta.get("general.kind")
        if self.meta_types.get("general.kind") != META_STR or kind not in KINDS:
            self._fail(FormatError, f"metadata: general.kind {kind!r} missing or not a known kind")
        self.kind = kind

    def _parse_meta(self, buf, count):
        c = _Cursor(buf, "metadata", self.path)
        self.meta, self.meta_types = {}, {}

        def string(what):
            (n,) = c.unpack("I", what + " length")
            if n > MAX_STRING:
                self._fail(FormatError, f"metadata: {what}: string longer than 16 MiB")
            raw = c.take(n, what)
            if b"\0" in raw:
                self._fail(FormatError, f"metadata: {what}: NUL byte in a string")
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                self._fail(FormatError, f"metadata: {what}: invalid UTF-8")

        for i in range(count):
            (klen,) = c.unpack("H", f"entry {i} key length")
            key_b = c.take(klen, f"entry {i} key")
            if not _KEY_RE.match(key_b):
                self._fail(FormatError, f"metadata: entry {i}: malformed key {key_b[:64]!r}")
            key = key_b.decode("ascii")
            if key in self.meta:
                self._fail(FormatError, f"metadata: duplicate key {key}")
            (mtype,) = c.unpack("B", f"{key} type")
            if mtype == META_I64:
                (v,) = c.unpack("q", key)
            elif mtype == META_F64:
                (v,) = c.unpack("d", key)
            elif mtype == META_BOOL:
                (b,) = c.unpack("B", key)
                if b > 1:
                    self._fail(FormatError, f"metadata: {key}: bool value {b}")
                v = bool(b)
            elif mtype == META_STR:
                v = string(key)
            elif mtype in (META_I64_ARRAY, META_F64_ARRAY, META_STR_ARRAY):
                (n,) = c.unpack("I", f"{key} count")
                if n > MAX_ARRAY:
                    self._fail(FormatError, f"metadata: {key}: array of {n} > 1 Mi elements")
                if mtype == META_STR_ARRAY:
                    v = [string(f"{key}[{j}]") for j in range(n)]
                else:
                    v = list(c.unpack(f"{n}{'q' if mtype == META_I64_ARRAY else 'd'}", key))
            else:
                self._fail(FormatError, f"metadata: {key}: unknown value type {mtype}")
            self.meta[key], self.meta_types[key] = v, mtype
        if c.pos != len(buf):
            self._fail(FormatError, f"metadata: {len(buf) - c.pos} bytes left over after {count} entries")

    def _parse_dir(self, buf, count):
        c = _Cursor(buf, "tensor directory", self.path)
        self.tensors, self._by_name = [], {}
        spans = []
        for i in range(count):
            (nlen,) = c.unpack("H", f"entry {i} name length")
            name_b = c.take(nlen, f"entry {i} name")
            if not _NAME_RE.match(name_b):
                self._fail(FormatError, f"tensor directory: entry {i}: malformed name {name_b[:64]!r}")
            name = name_b.decode("ascii")
            if name in self._by_name:
                self._fail(FormatError, f"tensor directory: duplicate tensor {name}")
            dcode, ndim, codec, reserved = c.unpack("BBBB", name)
            if dcode not in _DTYPE_BY_CODE:
                self._fail(FormatError, f"tensor {name}: unknown dtype code {dcode}")
            if ndim > MAX_NDIM:
                self._fail(FormatError, f"tensor {name}: ndim {ndim} > 8")
            if codec not in CODEC_NAMES:
                self._fail(FormatError, f"tensor {name}: unknown codec {codec}")
            if reserved:
                self._fail(FormatError, f"tensor {name}: reserved byte is not zero")
            shape = c.unpack(f"{ndim}Q", f"{name} dims")
            numel = 1
            for dim in shape:
                if dim < 1:
                    self._fail(FormatError, f"tensor {name}: dimension {dim} < 1")
                numel *= dim  # Python ints cannot overflow; the bound check follows
                if numel * _DTYPE_BY_CODE[dcode][1] > MAX_TENSOR_BYTES:
                    self._fail(FormatError, f"tensor {name}: larger than 2^40 bytes")
            dtype, esize = _DTYPE_BY_CODE[dcode]
            e = TensorEntry(index=i, name=name, dtype=dtype, shape=tuple(shape), codec=codec)
            nbytes = numel * esize
            if codec == CODEC_ALIAS:
                e.target, e.element_offset = c.unpack("IQ", f"{name} alias")
                if e.target >= i:
                    self._fail(FormatError, f"tensor {name}: alias target {e.target} is not an earlier entry")
                t = self.tensors[e.target]
                if t.codec == CODEC_ALIAS:
                    self._fail(FormatError, f"tensor {name}: alias target {t.name} is itself an alias")
                if t.dtype != dtype:
                    self._fail(FormatError, f"tensor {name}: alias of {t.name} with another dtype")
                if e.element_offset + numel > t.numel:
                    self._fail(FormatError, f"tensor {name}: alias view outside {t.name}")
            else:
                e.offset, e.stored_size, e.crc32 = c.unpack("QQI", f"{name} location")
                if e.offset % ALIGN:
                    self._fail(FormatError, f"tensor {name}: payload offset {e.offset} not a multiple of 64")
                if e.offset + e.stored_size > self.data_size:
                    self._fail(FormatError, f"tensor {name}: payload outside the data area")
                if codec == CODEC_RAW and e.stored_size != nbytes:
                    self._fail(FormatError, f"tensor {name}: raw payload of {e.stored_size} bytes, expected {nbytes}")
                if codec == CODEC_ZSTD and nbytes > e.stored_size * ZSTD_MAX_RATIO + ZSTD_SLACK:
                    self._fail(FormatError, f"tensor {name}: decoded size {nbytes} exceeds the zstd expansion bound")
                if e.stored_size:
                    spans.append((e.offset, e.offset + e.stored_size, name))
            self.tensors.append(e)
            self._by_name[name] = e
        if c.pos != len(buf):
            self._fail(FormatError, f"tensor directory: {len(buf) - c.pos} bytes left over after {count} entries")
        spans.sort()
        for (s0, e0, n0), (s1, e1, n1) in zip(spans, spans[1:]):
            if s1 < e0:
                self._fail(FormatError, f"tensor {n1}: payload overlaps {n0}")

    # -- access
    def __contains__(self, name) -> bool:
        return name in self._by_name

    def tensor(self, name: str) -> TensorEntry:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"{self.path}: no tensor {name!r}") from None

    def read(self, name: str) -> bytes:
        """Decoded bytes of a tensor (spec check 7); aliases slice their target."""
        e = self.tensor(name)
        if e.codec == CODEC_ALIAS:
            t = self.tensors[e.target]
            esize = DTYPES[e.dtype][1]
            return self.read(t.name)[e.element_offset * esize:(e.element_offset + e.numel) * esize]
        start = self.data_offset + e.offset
        payload = self._data[start:start + e.stored_size]
        if e.codec == CODEC_ZSTD:
            try:
                content, has_checksum, used = zstd_frame_info(payload)
            except BundleError as err:
                self._fail(FormatError, f"tensor {name}: {err}")
            if content != e.nbytes:
                self._fail(FormatError, f"tensor {name}: zstd content size {content}, expected {e.nbytes}")
            if used != len(payload):
                self._fail(FormatError, f"tensor {name}: payload is not exactly one zstd frame")
            if not has_checksum:
                self._fail(FormatError, f"tensor {name}: zstd frame without a content checksum")
            try:
                data = zstd_decompress(payload, e.nbytes)
            except BundleError as err:
                exc = ChecksumError if "checksum" in str(err).lower() else FormatError
                self._fail(exc, f"tensor {name}: {err}")
        else:
            data = bytes(payload)
        if zlib.crc32(data) != e.crc32:
            self._fail(ChecksumError, f"tensor {name}: crc32 of the decoded bytes mismatch")
        return data

    def verify(self) -> None:
        """Decode every payload, checking all checksums."""
        for e in self.tensors:
            if e.codec != CODEC_ALIAS:
                self.read(e.name)
