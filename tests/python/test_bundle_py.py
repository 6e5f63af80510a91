"""The Python bundle writer and reader (bindings/python/dalle/bundle.py).

Round trips every metadata type, dtype and codec, checks the layout rules of
docs/bundle-format.md byte by byte, and corrupts files in each way the spec's
"What a reader must check" list names, expecting the matching error.

Run: python3 -m unittest discover -s tests/python
"""

import hashlib
import os
import struct
import sys
import tempfile
import unittest
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "bindings", "python"))

from dalle import bundle as B  # noqa: E402

HEADER = struct.Struct("<8sHHIQQQIIQQIIQQ36sI")


def f32(values):
    return struct.pack(f"<{len(values)}f", *values)


class Layout:
    """The header fields of a bundle file, for surgery in the tests."""

    def __init__(self, data):
        (self.magic, self.major, self.minor, self.header_size, self.file_size,
         self.meta_offset, self.meta_size, self.meta_count, self.meta_crc,
         self.dir_offset, self.dir_size, self.tensor_count, self.dir_crc,
         self.data_offset, self.data_size, self.reserved, self.header_crc) = HEADER.unpack_from(data)

    def pack(self, fix_crc=True):
        raw = HEADER.pack(self.magic, self.major, self.minor, self.header_size, self.file_size,
                          self.meta_offset, self.meta_size, self.meta_count, self.meta_crc,
                          self.dir_offset, self.dir_size, self.tensor_count, self.dir_crc,
                          self.data_offset, self.data_size, self.reserved, self.header_crc)
        if fix_crc:
            raw = raw[:124] + struct.pack("<I", zlib.crc32(raw[:124]))
        return raw


def rewrite(data, meta=None, directory=None, **fields):
    """Replace sections / header fields and recompute every crc (so only the
    intended defect remains). Section sizes must stay the same."""
    lay = Layout(data)
    data = bytearray(data)
    if meta is not None:
        assert len(meta) == lay.meta_size
        data[lay.meta_offset:lay.meta_offset + lay.meta_size] = meta
    if directory is not None:
        assert len(directory) == lay.dir_size
        data[lay.dir_offset:lay.dir_offset + lay.dir_size] = directory
    lay.meta_crc = zlib.crc32(bytes(data[lay.meta_offset:lay.meta_offset + lay.meta_size]))
    lay.dir_crc = zlib.crc32(bytes(data[lay.dir_offset:lay.dir_offset + lay.dir_size]))
    for k, v in fields.items():
        setattr(lay, k, v)
    data[:128] = lay.pack()
    return bytes(data)


class BundleTestCase(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def path(self, name="t.dalle"):
        return os.path.join(self.tmp.name, name)

    def sample(self, level=3):
        """A bundle with every metadata type, dtype and codec."""
        w = B.BundleWriter("dalle", level=level)
        w.set_str("general.source", "unit test")
        w.set_i64("dalle.dim", -5)
        w.set_f64("dalle.ff_dropout", 0.125)
        w.set_bool("dalle.stable", True)
        w.set_str("dalle.name", "héllo")
        w.set_i64_array("vae.ddconfig.ch_mult", [1, 2, 4])
        w.set_f64_array("vae.normalization.mean", [0.5, 0.25])
        w.set_str_array("dalle.attn_types", ["full", "axial_row"])
        w.set_i64_array("empty", [])
        self.big = f32([float(i % 7) for i in range(4096)])        # compresses: zstd
        # incompressible, so stored raw
        self.noise = b"".join(hashlib.sha256(bytes([i])).digest() for i in range(32))[:1000]
        w.add_tensor("big", "f32", [64, 64], self.big)
        w.add_tensor("noise", "u8", [1000], self.noise)
        w.add_tensor("scalar", "f32", [], f32([3.5]))
        w.add_tensor("half", "f16", [2], struct.pack("<2e", 1.0, -2.0))
        w.add_tensor("bf", "bf16", [1], b"\x80\x3f")
        w.add_tensor("i8", "i8", [3], struct.pack("<3b", -1, 0, 1))
        w.add_tensor("i32", "i32", [2, 1], struct.pack("<2i", 7, -7))
        w.add_tensor("i64", "i64", [2], struct.pack("<2q", 1 << 40, -3))
        w.add_tensor("lazy", "f32", [2], lambda: f32([1.0, 2.0]))
        w.add_alias("big.rows", "big", [2, 64], element_offset=128)
        w.add_alias("big.all", "big", [4096])
        p = self.path()
        w.write(p)
        with open(p, "rb") as f:
            return p, f.read()


class RoundTrip(BundleTestCase):
    def test_metadata_and_tensors(self):
        p, _ = self.sample()
        b = B.Bundle.open(p)
        self.assertEqual(b.kind, "dalle")
        self.assertEqual(b.version, (1, 0))
        self.assertEqual(b.meta["dalle.dim"], -5)
        self.assertEqual(b.meta["dalle.ff_dropout"], 0.125)
        self.assertIs(b.meta["dalle.stable"], True)
        self.assertEqual(b.meta["dalle.name"], "héllo")
        self.assertEqual(b.meta["vae.ddconfig.ch_mult"], [1, 2, 4])
        self.assertEqual(b.meta["vae.normalization.mean"], [0.5, 0.25])
        self.assertEqual(b.meta["dalle.attn_types"], ["full", "axial_row"])
        self.assertEqual(b.meta["empty"], [])
        self.assertEqual(b.meta_types["dalle.stable"], B.META_BOOL)
        self.assertEqual(b.meta_types["vae.normalization.mean"], B.META_F64_ARRAY)
        self.assertEqual(b.read("big"), self.big)
        self.assertEqual(b.tensor("big").codec, B.CODEC_ZSTD)
        self.assertEqual(b.read("noise"), self.noise)
        self.assertEqual(b.tensor("noise").codec, B.CODEC_RAW)
        self.assertEqual(b.tensor("scalar").shape, ())
        self.assertEqual(b.read("scalar"), f32([3.5]))
        self.assertEqual(b.read("lazy"), f32([1.0, 2.0]))
        self.assertEqual(b.tensor("bf").dtype, "bf16")
        self.assertEqual(b.read("i64"), struct.pack("<2q", 1 << 40, -3))
        self.assertEqual(b.read("big.rows"), self.big[128 * 4:256 * 4])
        self.assertEqual(b.tensor("big.rows").codec, B.CODEC_ALIAS)
        self.assertEqual(b.tensors[b.tensor("big.all").target].name, "big")
        b.verify()

    def test_level_zero_is_raw(self):
        p, _ = self.sample(level=0)
        b = B.Bundle.open(p)
        self.assertTrue(all(e.codec in (B.CODEC_RAW, B.CODEC_ALIAS) for e in b.tensors))
        self.assertEqual(b.read("big"), self.big)

    def test_layout_rules(self):
        _, data = self.sample()
        lay = Layout(data)
        self.assertEqual(lay.magic, b"DALLEBND")
        self.assertEqual((lay.major, lay.minor, lay.header_size), (1, 0, 128))
        self.assertEqual(lay.file_size, len(data))
        self.assertEqual(lay.meta_offset, 128)
        self.assertEqual(lay.dir_offset, lay.meta_offset + lay.meta_size)
        self.assertEqual(lay.data_offset % 64, 0)
        self.assertEqual(lay.data_offset, (lay.dir_offset + lay.dir_size + 63) // 64 * 64)
        self.assertEqual(lay.data_offset + lay.data_size, len(data))
        self.assertEqual(lay.reserved, b"\0" * 36)
        self.assertEqual(lay.header_crc, zlib.crc32(data[:124]))
        # padding between directory and data is zero
        self.assertEqual(set(data[lay.dir_offset + lay.dir_size:lay.data_offset]) - {0}, set())
        b = B.Bundle(data)
        spans = sorted((e.offset, e.offset + e.stored_size) for e in b.tensors
                       if e.codec != B.CODEC_ALIAS)
        for (s0, e0), (s1, _) in zip(spans, spans[1:]):
            self.assertEqual(s1 % 64, 0)
            self.assertGreaterEqual(s1, e0)
            gap = data[lay.data_offset + e0:lay.data_offset + s1]
            self.assertEqual(set(gap) - {0}, set(), "padding between payloads is zero")
        self.assertEqual(spans[-1][1], lay.data_size, "nothing follows the last payload")

    def test_zstd_frame_has_size_and_checksum(self):
        p, data = self.sample()
        b = B.Bundle.open(p)
        e = b.tensor("big")
        frame = data[b.data_offset + e.offset:b.data_offset + e.offset + e.stored_size]
        size, has_checksum, used = B.zstd_frame_info(frame)
        self.assertEqual(size, len(self.big))
        self.assertTrue(has_checksum)
        self.assertEqual(used, len(frame))

    def test_higher_minor_version_accepted(self):
        _, data = self.sample()
        b = B.Bundle(rewrite(data, minor=7))
        self.assertEqual(b.version, (1, 7))

    def test_writer_rejects_bad_input(self):
        w = B.BundleWriter("clip")
        with self.assertRaises(B.BundleError):
            B.BundleWriter("gan")
        with self.assertRaises(B.BundleError):
            w.set_i64("bad key!", 1)
        with self.assertRaises(B.BundleError):
            w.add_tensor("x", "f64", [1], b"\0" * 8)
        with self.assertRaises(B.BundleError):
            w.add_tensor("x", "f32", [2], b"\0" * 4)
        with self.assertRaises(B.BundleError):
            w.add_tensor("x", "f32", [0], b"")
        w.add_tensor("x", "f32", [2], b"\0" * 8)
        with self.assertRaises(B.BundleError):
            w.add_tensor("x", "f32", [2], b"\0" * 8)
        with self.assertRaises(B.BundleError):
            w.add_alias("y", "x", [3])
        with self.assertRaises(B.BundleError):
            w.add_alias("y", "missing", [1])
        w.add_alias("y", "x", [1], 1)
        with self.assertRaises(B.BundleError):
            w.add_alias("z", "y", [1])
        with self.assertRaises(B.BundleError):
            w.write(self.path())  # general.source missing


class Rejection(BundleTestCase):
    """Each check of the spec's list, with the error class the C library uses."""

    def assertRejects(self, data, exc, fragment):
        with self.assertRaises(exc) as cm:
            b = B.Bundle(data, "bad.dalle")
            b.verify()
        self.assertIn(fragment, str(cm.exception))
        self.assertIn("bad.dalle", str(cm.exception))

    def test_short_file(self):
        self.assertRejects(b"DALLEBND", B.FormatError, "shorter than the 128-byte header")

    def test_bad_magic(self):
        _, data = self.sample()
        self.assertRejects(b"DALLEBNX" + data[8:], B.FormatError, "bad magic")

    def test_major_version(self):
        _, data = self.sample()
        self.assertRejects(rewrite(data, major=2), B.VersionError, "version 2.0")

    def test_header_size(self):
        _, data = self.sample()
        self.assertRejects(rewrite(data, header_size=120), B.FormatError, "header_size")

    def test_header_checksum(self):
        _, data = self.sample()
        bad = bytearray(data)
        bad[40] ^= 1  # meta_count, without fixing the crc
        self.assertRejects(bytes(bad), B.ChecksumError, "header: crc32")

    def test_truncated(self):
        _, data = self.sample()
        self.assertRejects(data[:-1], B.FormatError, "truncated or extended")
        self.assertRejects(data[:200], B.FormatError, "truncated or extended")

    def test_extended(self):
        _, data = self.sample()
        self.assertRejects(data + b"\0", B.FormatError, "truncated or extended")

    def test_sections(self):
        _, data = self.sample()
        lay = Layout(data)
        self.assertRejects(rewrite(data, dir_offset=lay.dir_offset + 1), B.FormatError,
                           "does not follow")
        self.assertRejects(rewrite(data, data_offset=lay.data_offset + 64,
                                   data_size=lay.data_size - 64), B.FormatError, "data_offset")
        self.assertRejects(rewrite(data, data_size=lay.data_size - 1), B.FormatError,
                           "data area")
        self.assertRejects(rewrite(data, meta_offset=0), B.FormatError, "meta_offset")

    def test_meta_checksum(self):
        _, data = self.sample()
        lay = Layout(data)
        bad = bytearray(data)
        bad[lay.meta_offset + 3] ^= 0x20
        self.assertRejects(bytes(bad), B.ChecksumError, "metadata: crc32")

    def test_dir_checksum(self):
        _, data = self.sample()
        lay = Layout(data)
        bad = bytearray(data)
        bad[lay.dir_offset + 3] ^= 0x20
        self.assertRejects(bytes(bad), B.ChecksumError, "tensor directory: crc32")

    def test_raw_payload_checksum(self):
        p, data = self.sample()
        b = B.Bundle.open(p)
        e = b.tensor("noise")
        bad = bytearray(data)
        bad[b.data_offset + e.offset + 10] ^= 0xFF
        self.assertRejects(bytes(bad), B.ChecksumError, "tensor noise: crc32")

    def test_zstd_payload_corrupt(self):
        p, data = self.sample()
        b = B.Bundle.open(p)
        e = b.tensor("big")
        bad = bytearray(data)
        bad[b.data_offset + e.offset + e.stored_size - 2] ^= 0xFF  # inside the checksum
        with self.assertRaises((B.ChecksumError, B.FormatError)) as cm:
            B.Bundle(bytes(bad)).read("big")
        self.assertIn("tensor big", str(cm.exception))

    def _meta_entry(self, key, mtype, payload):
        kb = key.encode()
        return struct.pack("<H", len(kb)) + kb + bytes([mtype]) + payload

    def _with_meta(self, entries):
        """A bundle whose metadata section is exactly ``entries``."""
        w = B.BundleWriter("clip")
        w.set_str("general.source", "x")
        w.add_tensor("t", "f32", [1], f32([1.0]))
        p = self.path("m.dalle")
        w.write(p)
        with open(p, "rb") as f:
            data = f.read()
        lay = Layout(data)
        meta = b"".join(entries)
        # rebuild the file around the new metadata section
        directory = data[lay.dir_offset:lay.dir_offset + lay.dir_size]
        payload = data[lay.data_offset:]
        dir_offset = 128 + len(meta)
        data_offset = (dir_offset + len(directory) + 63) // 64 * 64
        body = meta + directory + b"\0" * (data_offset - dir_offset - len(directory)) + payload
        lay.meta_size, lay.meta_count = len(meta), len(entries)
        lay.dir_offset, lay.data_offset = dir_offset, data_offset
        lay.file_size = data_offset + len(payload)
        lay.meta_crc = zlib.crc32(meta)
        return lay.pack() + body

    def test_meta_entries(self):
        kind = self._meta_entry("general.kind", 4, struct.pack("<I", 4) + b"clip")
        src = self._meta_entry("general.source", 4, struct.pack("<I", 1) + b"x")
        B.Bundle(self._with_meta([kind, src]))  # the baseline is valid
        self.assertRejects(self._with_meta([kind, src, kind]), B.FormatError, "duplicate key")
        self.assertRejects(self._with_meta([kind, self._meta_entry("a b", 1, b"\0" * 8)]),
                           B.FormatError, "malformed key")
        self.assertRejects(self._with_meta([kind, self._meta_entry("x", 9, b"")]),
                           B.FormatError, "unknown value type")
        self.assertRejects(self._with_meta([kind, self._meta_entry("x", 3, b"\2")]),
                           B.FormatError, "bool value")
        self.assertRejects(self._with_meta([kind, self._meta_entry("x", 4, struct.pack("<I", 3) + b"a\0b")]),
                           B.FormatError, "NUL")
        self.assertRejects(self._with_meta([kind, self._meta_entry("x", 5, struct.pack("<I", 2) + b"\0" * 8)]),
                           B.FormatError, "runs past")
        self.assertRejects(self._with_meta([kind, self._meta_entry("x", 5, struct.pack("<I", (1 << 20) + 1))]),
                           B.FormatError, "1 Mi")
        self.assertRejects(self._with_meta([src]), B.FormatError, "general.kind")
        bad_kind = self._meta_entry("general.kind", 4, struct.pack("<I", 3) + b"gan")
        self.assertRejects(self._with_meta([bad_kind]), B.FormatError, "general.kind")
        int_kind = self._meta_entry("general.kind", 1, b"\0" * 8)
        self.assertRejects(self._with_meta([int_kind]), B.FormatError, "general.kind")
        # bytes left over: meta_count one short
        data = self._with_meta([kind, src])
        lay = Layout(data)
        self.assertRejects(rewrite(data, meta_count=lay.meta_count - 1), B.FormatError, "left over")

    def _dir_of(self, data):
        lay = Layout(data)
        return bytearray(data[lay.dir_offset:lay.dir_offset + lay.dir_size])

    def _entry_pos(self, directory, name):
        return directory.index(struct.pack("<H", len(name)) + name.encode())

    def test_directory_entries(self):
        _, data = self.sample()
        b = B.Bundle(data)
        d = self._dir_of(data)
        pos = self._entry_pos(d, "noise") + 2 + len("noise")  # dtype byte
        for offset, value, fragment in ((0, 7, "unknown dtype code 7"), (1, 9, "ndim 9"),
                                        (2, 3, "unknown codec"), (3, 1, "reserved")):
            bad = bytearray(d)
            bad[pos + offset] = value
            self.assertRejects(rewrite(data, directory=bytes(bad)), B.FormatError,
                               f"tensor noise: {fragment}")
        # dims: 0 and overflow
        bad = bytearray(d)
        struct.pack_into("<Q", bad, pos + 4, 0)
        self.assertRejects(rewrite(data, directory=bytes(bad)), B.FormatError, "tensor noise: dimension 0")
        big_pos = self._entry_pos(d, "big") + 2 + 3
        bad = bytearray(d)
        struct.pack_into("<Q", bad, big_pos + 4, 1 << 40)
        self.assertRejects(rewrite(data, directory=bytes(bad)), B.FormatError, "2^40")
        # location: misaligned, outside, raw size, overlap, expansion bound
        loc = pos + 4 + 8  # after the one dim of 'noise'
        e = b.tensor("noise")
        for field, value, fragment in (("offset", e.offset + 1, "not a multiple of 64"),
                                       ("offset", (b.data_size // 64 + 1) * 64, "outside the data area"),
                                       ("size", e.stored_size + 1, "raw payload"),
                                       ("offset", b.tensor("big").offset, "overlaps")):
            bad = bytearray(d)
            struct.pack_into("<Q", bad, loc + (0 if field == "offset" else 8), value)
            self.assertRejects(rewrite(data, directory=bytes(bad)), B.FormatError, fragment)
        zloc = big_pos + 4 + 16
        bad = bytearray(d)
        struct.pack_into("<Q", bad, zloc + 8, 1)  # 16 KiB in a 1-byte frame
        struct.pack_into("<Q", bad, big_pos + 4, 1 << 20)  # and a huge shape
        self.assertRejects(rewrite(data, directory=bytes(bad)), B.FormatError, "expansion bound")

    def test_alias_entries(self):
        _, data = self.sample()
        d = self._dir_of(data)
        pos = self._entry_pos(d, "big.rows") + 2 + len("big.rows")
        alias_loc = pos + 4 + 16
        bad = bytearray(d)
        struct.pack_into("<I", bad, alias_loc, 200)
        self.assertRejects(rewrite(data, directory=bytes(bad)), B.FormatError, "not an earlier entry")
        bad = bytearray(d)
        struct.pack_into("<Q", bad, alias_loc + 4, 4000)
        self.assertRejects(rewrite(data, directory=bytes(bad)), B.FormatError, "view outside")
        bad = bytearray(d)
        bad[pos] = 4  # u8 alias of an f32 tensor
        self.assertRejects(rewrite(data, directory=bytes(bad)), B.FormatError, "another dtype")
        # alias of an alias: point big.all at big.rows
        b = B.Bundle(data)
        pos2 = self._entry_pos(d, "big.all") + 2 + len("big.all") + 4 + 8
        bad = bytearray(d)
        struct.pack_into("<I", bad, pos2, b.tensor("big.rows").index)
        self.assertRejects(rewrite(data, directory=bytes(bad)), B.FormatError, "itself an alias")

    def test_duplicate_and_malformed_names(self):
        _, data = self.sample()
        d = self._dir_of(data)
        pos = self._entry_pos(d, "i32")
        bad = bytearray(d)
        bad[pos + 2:pos + 5] = b"i64"
        self.assertRejects(rewrite(data, directory=bytes(bad)), B.FormatError, "duplicate tensor i64")
        bad = bytearray(d)
        bad[pos + 2] = ord(" ")
        self.assertRejects(rewrite(data, directory=bytes(bad)), B.FormatError, "malformed name")

    def test_zstd_content_size_mismatch(self):
        # a frame whose content size disagrees with the shape
        w = B.BundleWriter("clip")
        w.set_str("general.source", "x")
        values = f32([1.0] * 1024)
        w.add_tensor("t", "f32", [1024], values)
        p = self.path("z.dalle")
        w.write(p)
        with open(p, "rb") as f:
            data = f.read()
        b = B.Bundle(data)
        self.assertEqual(b.tensor("t").codec, B.CODEC_ZSTD)
        d = self._dir_of(data)
        pos = self._entry_pos(d, "t") + 3 + 4
        struct.pack_into("<Q", d, pos, 512)
        self.assertRejects(rewrite(data, directory=bytes(d)), B.FormatError, "content size")


if __name__ == "__main__":
    unittest.main()
