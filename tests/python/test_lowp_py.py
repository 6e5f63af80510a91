"""The converter's reduced-precision encodings (dalle/lowp.py, --dtype):
bf16 and f16 round to nearest with ties to even, NaN and infinities survive,
out-of-range values are refused; int8 per-block quantisation (block 32,
symmetric, float32 scales); and --dtype on a synthetic DALLE checkpoint.
Standard library only."""
import array
import math
import os
import struct
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "bindings", "python"))

from dalle import bundle as B  # noqa: E402
from dalle import convert as C  # noqa: E402
from dalle import lowp  # noqa: E402

GOLDEN = os.environ.get("DALLE_GOLDEN") or os.path.join(HERE, "..", "..", "..", "shared",
                                                        "golden")


def f32_bits(*bits):
    return struct.pack(f"<{len(bits)}I", *bits)


def f32(*vals):
    return struct.pack(f"<{len(vals)}f", *vals)


def u16(data):
    return list(struct.unpack(f"<{len(data) // 2}H", data))


class Bf16(unittest.TestCase):
    def test_exact_values_pass_through(self):
        for v, h in ((1.0, 0x3F80), (-2.0, 0xC000), (0.0, 0x0000), (-0.0, 0x8000),
                     (0.15625, 0x3E20), (2.0 ** -133, 0x0001)):
            self.assertEqual(u16(lowp.to_bf16(f32(v))), [h], v)

    def test_ties_to_even(self):
        # 0x3F80_8000 is exactly between 0x3F80 and 0x3F81: even (0x3F80) wins;
        # 0x3F81_8000 lies between 0x3F81 and 0x3F82: even (0x3F82) wins.
        got = u16(lowp.to_bf16(f32_bits(0x3F808000, 0x3F818000, 0xBF808000, 0xBF818000)))
        self.assertEqual(got, [0x3F80, 0x3F82, 0xBF80, 0xBF82])

    def test_nearest(self):
        got = u16(lowp.to_bf16(f32_bits(0x3F807FFF, 0x3F808001, 0x3F80FFFF, 0x007FFFFF)))
        # just below a tie rounds down, just above rounds up, carry into the
        # exponent, the largest subnormal rounds up to the smallest normal
        self.assertEqual(got, [0x3F80, 0x3F81, 0x3F81, 0x0080])

    def test_inf_and_nan(self):
        got = u16(lowp.to_bf16(f32_bits(0x7F800000, 0xFF800000, 0x7FC00000, 0x7F800001,
                                        0xFF800001)))
        self.assertEqual(got[:2], [0x7F80, 0xFF80])
        for h in got[2:]:  # still NaN (a payload in the low half must not make an inf)
            self.assertEqual(h & 0x7F80, 0x7F80)
            self.assertNotEqual(h & 0x007F, 0)
        self.assertEqual(got[4] & 0x8000, 0x8000)  # sign kept

    def test_overflow_is_refused(self):
        # the largest float32 rounds past the largest bfloat16 (0x7F7F)
        with self.assertRaisesRegex(lowp.LowpError, "element 1 .*bfloat16 range"):
            lowp.to_bf16(f32_bits(0x3F800000, 0x7F7FFFFF))
        self.assertEqual(u16(lowp.to_bf16(f32_bits(0x7F7F7FFF))), [0x7F7F])

    def test_round_trip_error(self):
        vals = [math.sin(i) * 10 ** (i % 7 - 3) for i in range(1, 2000)]
        back = lowp.from_bf16(lowp.to_bf16(f32(*vals)))
        for x, y in zip(array.array("f", vals), back):
            self.assertLessEqual(abs(x - y), abs(x) * 2.0 ** -8)  # 7 stored mantissa bits


class F16(unittest.TestCase):
    def test_values(self):
        got = u16(lowp.to_f16(f32(1.0, -2.0, 65504.0, 2.0 ** -24, 2.0 ** -14, 0.0, -0.0)))
        self.assertEqual(got, [0x3C00, 0xC000, 0x7BFF, 0x0001, 0x0400, 0x0000, 0x8000])

    def test_ties_to_even(self):
        # 1 + 2^-11 is halfway between 1 and 1 + 2^-10: 1 wins;
        # 1 + 3 * 2^-11 is halfway between 1 + 2^-10 and 1 + 2^-9: the even one wins
        got = u16(lowp.to_f16(f32(1 + 2 ** -11, 1 + 3 * 2 ** -11, 2.0 ** -25, 3 * 2.0 ** -25)))
        self.assertEqual(got, [0x3C00, 0x3C02, 0x0000, 0x0002])

    def test_inf_nan_and_range(self):
        got = u16(lowp.to_f16(f32(math.inf, -math.inf, math.nan, 65519.0)))
        self.assertEqual(got[:2], [0x7C00, 0xFC00])
        self.assertEqual(got[2] & 0x7C00, 0x7C00)
        self.assertNotEqual(got[2] & 0x03FF, 0)
        self.assertEqual(got[3], 0x7BFF)
        with self.assertRaisesRegex(lowp.LowpError, "element 2 .*float16 range"):
            lowp.to_f16(f32(0.0, 1.0, 65520.0))


class Int8(unittest.TestCase):
    def test_blocks(self):
        rows, cols = 3, 70  # 3 blocks per row, the last one of 6 elements
        vals = [((r * cols + c) % 13 - 6) * (1.0 + r) * (0.25 if c >= 32 else 1.0)
                for r in range(rows) for c in range(cols)]
        vals[2 * cols + 64:] = [0.0] * 6  # an all-zero block
        q, s = lowp.quantize_int8(f32(*vals), rows, cols, 32)
        qa = array.array("b")
        qa.frombytes(q)
        sa = lowp.f32_array(s)
        self.assertEqual(len(qa), rows * cols)
        self.assertEqual(len(sa), rows * 3)
        for r in range(rows):
            for b in range(3):
                block = vals[r * cols + 32 * b:r * cols + min(32 * b + 32, cols)]
                amax = max(abs(v) for v in block)
                want = struct.unpack("<f", struct.pack("<f", amax / 127))[0]
                self.assertEqual(sa[r * 3 + b], want)
                qs = qa[r * cols + 32 * b:r * cols + 32 * b + len(block)]
                if amax:
                    self.assertEqual(max(abs(k) for k in qs), 127)  # the largest maps to ±127
                else:
                    self.assertEqual(list(qs), [0] * len(block))
        deq = lowp.dequantize_int8(q, s, rows, cols, 32)
        for i, (x, y) in enumerate(zip(vals, deq)):
            scale = sa[(i // cols) * 3 + (i % cols) // 32]
            self.assertLessEqual(abs(x - y), scale * 0.5 * (1 + 1e-6) + 1e-30, i)

    def test_round_half_even_and_clamp(self):
        # amax 127 -> scale 1: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -2.5 -> -2, -127 stays
        q, s = lowp.quantize_int8(f32(127.0, 0.5, 1.5, 2.5, -2.5, -127.0), 1, 6, 32)
        self.assertEqual(list(array.array("b", q)), [127, 0, 2, 2, -2, -127])
        self.assertEqual(lowp.f32_array(s)[0], 1.0)

    def test_non_finite_is_refused(self):
        for bad in (math.inf, math.nan):
            with self.assertRaisesRegex(lowp.LowpError, "element 3 .*not finite"):
                lowp.quantize_int8(f32(1.0, 2.0, 3.0, bad), 1, 4, 32)


@unittest.skipUnless(os.path.isdir(GOLDEN), "no golden cases")
class ConvertDtype(unittest.TestCase):
    """--dtype on the golden DALLE checkpoints: which tensors change, aliases
    of shared layers and tied embeddings, the metadata."""

    def convert(self, case, dtype):
        out = os.path.join(self.tmp.name, f"{case}-{dtype}.dalle")
        C.convert([os.path.join(GOLDEN, case, "dalle.pt")], out, dtype=dtype)
        return B.Bundle.open(out)

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.tmp.cleanup()

    def test_reduced_tensors_and_metadata(self):
        ref = self.convert("dalle_full", "f32")
        self.assertNotIn("weights.dtype", ref.meta)
        for dtype, code in (("f16", "f16"), ("bf16", "bf16"), ("int8", "i8")):
            b = self.convert("dalle_full", dtype)
            self.assertEqual(b.meta["weights.dtype"], dtype)
            reduced = {e.name for e in b.tensors if e.dtype == code}
            expected = {e.name for e in ref.tensors
                        if C._REDUCIBLE.match(e.name) and len(e.shape) == 2}
            self.assertEqual(reduced, expected)
            self.assertIn("to_logits.1.weight", reduced)
            self.assertTrue(any(n.endswith("to_qkv.weight") for n in reduced))
            for e in b.tensors:  # everything else is untouched
                if e.name not in reduced and not e.name.endswith(":scale"):
                    self.assertEqual(b.read(e.name), ref.read(e.name), e.name)
            w = "to_logits.1.weight"
            rows, cols = b.tensor(w).shape
            src = ref.read(w)
            if dtype == "int8":
                self.assertEqual(b.meta["weights.int8_block"], 32)
                self.assertEqual(b.tensor(w + ":scale").shape, (rows, -(-cols // 32)))
                q, s = lowp.quantize_int8(src, rows, cols, 32)
                self.assertEqual(b.read(w), q)
                self.assertEqual(b.read(w + ":scale"), s)
            else:
                fn = lowp.to_f16 if dtype == "f16" else lowp.to_bf16
                self.assertEqual(b.read(w), fn(src))

    def test_aliases_stay_aliases(self):
        for case in ("dalle_variants", "dalle_shared_attn"):
            ref = self.convert(case, "f32")
            b = self.convert(case, "int8")
            ref_alias = {e.name for e in ref.tensors if e.codec == B.CODEC_ALIAS}
            alias = {e.name for e in b.tensors if e.codec == B.CODEC_ALIAS}
            self.assertLessEqual(ref_alias, alias, case)
            for name in alias - ref_alias:  # only the scales of aliased int8 matrices
                self.assertTrue(name.endswith(":scale") and name[:-6] in alias, name)
                e = b.tensor(name)
                t = b.tensor(name[:-6])
                target = b.tensors[t.target]
                self.assertEqual(b.tensors[e.target].name, target.name + ":scale")
                self.assertEqual(e.element_offset,
                                 t.element_offset // target.shape[1] * e.shape[1])
            b.verify()

    def test_other_kinds_refuse_dtype(self):
        with self.assertRaisesRegex(C.ConvertError, "only applies to DALLE"):
            C.convert([os.path.join(GOLDEN, "vae_resblocks", "vae.pt")],
                      os.path.join(self.tmp.name, "v.dalle"), dtype="bf16")
        with self.assertRaisesRegex(C.ConvertError, "--dtype f8"):
            C.convert([os.path.join(GOLDEN, "dalle_full", "dalle.pt")],
                      os.path.join(self.tmp.name, "d.dalle"), dtype="f8")


if __name__ == "__main__":
    unittest.main()
