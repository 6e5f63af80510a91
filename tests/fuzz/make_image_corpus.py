#!/usr/bin/env python3
"""Writes the seed images of fuzz_image (README.md), standard library only:

    python3 tests/fuzz/make_image_corpus.py tests/fuzz/corpus_image

PNGs of every colour type and bit depth stb_image reads (grey, grey+alpha,
RGB, RGBA, palette with tRNS; 1..16 bits), an interlaced one, one of
several IDAT chunks; and baseline JPEGs built here with one-code Huffman
tables (every coefficient zero: a flat image), grey and 4:2:0 colour with a
restart interval. Each is tens of bytes.
"""
import os
import struct
import sys
import zlib


def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def png(w, h, depth, ctype, rows, interlace=0, extra=b"", split=1):
    """rows: the filtered scanlines already joined (filter byte first)."""
    head = struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, interlace)
    z = zlib.compress(rows)
    parts = [z[i * len(z) // split:(i + 1) * len(z) // split] for i in range(split)]
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + extra +
            b"".join(chunk(b"IDAT", p) for p in parts) + chunk(b"IEND", b""))


def scanlines(w, h, channels, depth, filt=0):
    bits = w * channels * depth
    nbytes = (bits + 7) // 8
    out = b""
    for y in range(h):
        out += bytes([filt]) + bytes((x * 37 + y * 11) & 0xFF for x in range(nbytes))
    return out


def jpeg(w, h, comps, restart=0):
    """Baseline JPEG, all coefficients zero. comps: [(id, hv sampling)]."""
    def seg(marker, data):
        return b"\xff" + bytes([marker]) + struct.pack(">H", len(data) + 2) + data
    out = b"\xff\xd8"
    out += seg(0xDB, b"\x00" + bytes([1] * 64))  # one quantisation table of ones
    sof = struct.pack(">BHHB", 8, h, w, len(comps))
    for cid, hv in comps:
        sof += bytes([cid, hv, 0])
    out += seg(0xC0, sof)
    one_code = bytes([1] + [0] * 15) + b"\x00"  # a single 1-bit code for symbol 0
    out += seg(0xC4, b"\x00" + one_code)  # DC table 0: category 0 only
    out += seg(0xC4, b"\x10" + one_code)  # AC table 0: EOB only
    if restart:
        out += seg(0xDD, struct.pack(">H", restart))
    sos = bytes([len(comps)])
    for cid, _ in comps:
        sos += bytes([cid, 0x00])
    out += seg(0xDA, sos + b"\x00\x3f\x00")
    hmax = max(hv >> 4 for _, hv in comps)
    vmax = max(hv & 15 for _, hv in comps)
    mcus = ((w + 8 * hmax - 1) // (8 * hmax)) * ((h + 8 * vmax - 1) // (8 * vmax))
    blocks = sum((hv >> 4) * (hv & 15) for _, hv in comps)
    data = b""
    per = restart or mcus
    for start in range(0, mcus, per):
        n = min(per, mcus - start)
        bits = "00" * blocks * n  # DC category 0, then EOB, per block
        bits += "1" * (-len(bits) % 8)
        data += bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8))
        if start + per < mcus:
            data += b"\xff" + bytes([0xD0 + (start // per) % 8])
    return out + data + b"\xff\xd9"


def main(out):
    os.makedirs(out, exist_ok=True)
    files = {
        "rgb_8x8.png": png(8, 8, 8, 2, scanlines(8, 8, 3, 8)),
        "rgba_5x3.png": png(5, 3, 8, 6, scanlines(5, 3, 4, 8, filt=1)),
        "grey_1bit_9x2.png": png(9, 2, 1, 0, scanlines(9, 2, 1, 1)),
        "grey16_3x4.png": png(3, 4, 16, 0, scanlines(3, 4, 1, 16, filt=2)),
        "grey_alpha_4x4.png": png(4, 4, 8, 4, scanlines(4, 4, 2, 8, filt=3)),
        "rgb16_2x2.png": png(2, 2, 16, 2, scanlines(2, 2, 3, 16, filt=4)),
        "palette_4bit_7x3.png": png(7, 3, 4, 3, scanlines(7, 3, 1, 4),
                                   extra=chunk(b"PLTE", bytes(range(48))) +
                                   chunk(b"tRNS", b"\x00\x80")),
        "interlaced_9x9.png": png(9, 9, 8, 2, b"".join(
            scanlines(w, h, 3, 8) for w, h in [(2, 2), (1, 2), (3, 1), (2, 3), (5, 2), (4, 5), (9, 4)]
            if w and h), interlace=1),
        "tall_1x20.png": png(1, 20, 8, 2, scanlines(1, 20, 3, 8), split=3),
        "grey_8x8.jpg": jpeg(8, 8, [(1, 0x11)]),
        "colour_420_17x9.jpg": jpeg(17, 9, [(1, 0x22), (2, 0x11), (3, 0x11)], restart=1),
    }
    for name, data in files.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print(f"{len(files)} seed images written to {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus_image"))
