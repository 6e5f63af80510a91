"""The `dalle` command as a user meets it: every command, its output, and
its errors (one line on stderr, the exit status: 1 failure, 2 usage)."""
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import tempfile
import time
import unittest
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.environ.get("DALLE_BUILD_DIR", os.path.join(HERE, "..", "..", "build"))
DALLE = os.path.join(BUILD, "examples", "dalle")
GOLDEN = os.environ.get("DALLE_GOLDEN", os.path.join(HERE, "..", "..", "..", "shared", "golden"))
MERGES = os.path.join(os.path.dirname(os.path.normpath(GOLDEN)), "vocab", "bpe_simple_vocab_16e6.txt")


def bundle(name):
    return os.path.join(BUILD, "tests", name + ".dalle")


GOLDEN_BUNDLE = bundle("dalle_full")  # tiny DALLE: 16 caption tokens (vocab 400), 8x8 image tokens (128), 32 px
DALLE_FULL, VAE, CLIP = GOLDEN_BUNDLE, bundle("vae_resblocks"), bundle("clip_dalle_pytorch")
OPENAI_CLIP = bundle("openai_clip")
have_golden = unittest.skipUnless(
    all(os.path.exists(b) for b in (DALLE_FULL, VAE, CLIP, OPENAI_CLIP)),
    "golden bundles not built (../shared/golden absent)")


def run(*args, env=None, stdin=None, timeout=60):
    """Run dalle; str arguments, or bytes for what must reach it unchanged."""
    e = dict(os.environ, **(env or {}))
    return subprocess.run([DALLE, *args], capture_output=True, timeout=timeout, env=e,
                          input=stdin, text=not isinstance(stdin, bytes))


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])  # width, height


def write_png(path, width, height, pixel):
    """An 8-bit RGB PNG from pixel(x, y) -> (r, g, b), standard library only."""
    rows = b"".join(b"\0" + bytes(c for x in range(width) for c in pixel(x, y)) for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


class CliCase(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.tmp = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def path(self, name):
        return os.path.join(self.tmp, name)

    def ok(self, *args, **kw):
        r = run(*args, **kw)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r

    def fails(self, status, expected, *args, **kw):
        """The command exits with `status` and one stderr line, 'dalle: ...',
        that contains `expected` (a str) or matches it (a compiled regex)."""
        r = run(*args, **kw)
        err = r.stderr if isinstance(r.stderr, str) else r.stderr.decode()
        self.assertEqual(r.returncode, status, f"{args}: {err}")
        lines = err.strip().splitlines()
        self.assertEqual(len(lines), 1, f"{args}: not one line: {err!r}")
        self.assertTrue(lines[0].startswith("dalle: "), lines[0])
        if isinstance(expected, str):
            self.assertIn(expected, lines[0])
        else:
            self.assertRegex(lines[0], expected)
        return lines[0]


@unittest.skipUnless(os.path.exists(DALLE), f"{DALLE} not built")
class CliBasics(CliCase):
    def test_help_and_version(self):
        r = self.ok("--help")
        self.assertIn("usage: dalle COMMAND", r.stdout)
        for cmd in ("generate", "info", "tokenize", "encode", "decode", "score", "convert"):
            self.assertIn(f"  {cmd} ", r.stdout)
            h = self.ok(cmd, "--help")
            self.assertIn(f"usage: dalle {cmd}", h.stdout, cmd)
            self.assertEqual(h.stderr, "")
        r = self.ok("--version")
        self.assertRegex(r.stdout, r"^dalle \d+\.\d+\.\d+ \(libdalle ABI 1\)")

    def test_usage_errors(self):
        r = run()
        self.assertEqual(r.returncode, 2)
        self.fails(2, "unknown command 'frobnicate'", "frobnicate")
        self.fails(2, "info: unknown option '--bogus'", "info", "--bogus", "x")
        self.fails(2, "info: a bundle is needed", "info")
        for cmd in ("generate", "tokenize", "encode", "decode", "score"):
            self.fails(2, f"{cmd}: unknown option '--bogus'", cmd, "--bogus")
        self.fails(2, "generate: a model is needed", "generate", "caption")
        self.fails(2, "generate: a caption is needed", "generate", "-m", "x.dalle")
        self.fails(2, "tokenize: a text is needed", "tokenize", "-m", "x.dalle")
        self.fails(2, "encode: an image file is needed", "encode", "-m", "x.dalle")
        self.fails(2, "decode: an output file is needed", "decode", "-m", "x.dalle", "1")
        self.fails(2, "score: a CLIP model is needed", "score", "cap", "img.png")
        self.fails(2, "score: an image file is needed", "score", "--clip", "c.dalle", "cap")
        self.fails(2, "convert: an input checkpoint", "convert")

    def test_bad_numbers(self):
        """Numbers parse completely and within range, before any file is opened."""
        base = ["generate", "-m", "/nonexistent.dalle", "cap"]
        for args, msg in [
            (["-n", "0"], "-n: 0 is out of range 1..1000000"),
            (["-n", "3x"], "-n: '3x' is not an integer"),
            (["-n", ""], "-n: '' is not an integer"),
            (["--num-images=99999999999999999999"], "--num-images: 99999999999999999999 is out of range"),
            (["--batch", "0"], "--batch: 0 is out of range 1..4096"),
            (["--threads", "-1"], "--threads: -1 is out of range 0..4096"),
            (["--backend", "gpu"], "--backend: 'gpu': expected cpu, cuda or auto"),
            (["--backend"], "--backend needs a value"),
            (["--device", "-1"], "--device: -1 is out of range 0..1023"),
            (["--seed", "-1"], "--seed: '-1' is not a non-negative integer"),
            (["--seed", "18446744073709551616"], "--seed: 18446744073709551616 is out of range"),
            (["--temperature", "0"], "--temperature: 0 is out of range (0, "),
            (["--temperature", "nan"], "--temperature: 'nan' is not a finite number"),
            (["--filter-thres", "1"], "--filter-thres: 1 is out of range [0, 1)"),
            (["--filter-thres", "-0.1"], "--filter-thres: -0.1 is out of range [0, 1)"),
            (["--cond-scale", "inf"], "--cond-scale: 'inf' is not a finite number"),
            (["--cond-scale", "1.5.2"], "--cond-scale: '1.5.2' is not a finite number"),
            (["--prime-tokens", "-3"], "--prime-tokens: -3 is out of range"),
            (["--prime-tokens", "3"], "--prime-tokens needs --prime IMAGE"),
            (["--seed"], "--seed needs a value"),
            (["extra"], "one caption only"),
            (["-n", "5000", "--grid", "g.png"], "--grid takes at most 4096 images (-n 5000)"),
        ]:
            self.fails(2, "generate: " + msg, *base, *args)
        self.fails(2, "tokenize: --context-length: 0 is out of range 1..65536",
                   "tokenize", "-m", "x", "t", "--context-length", "0")
        self.fails(2, "tokenize: --truncate takes no value", "tokenize", "-m", "x", "t", "--truncate=1")
        self.fails(2, "decode: ids: 'abc' is not an integer token id", "decode", "-m", "x", "-o", "o.png", "1", "abc")
        self.fails(2, "encode: -t: 'many' is not an integer", "encode", "-m", "x", "i.png", "-t", "many")

    def test_info_bad_files(self):
        line = self.fails(1, "/nonexistent/model.dalle", "info", "/nonexistent/model.dalle")
        with tempfile.NamedTemporaryFile(suffix=".dalle") as f:
            f.write(b"not a bundle at all, just some text" * 10)
            f.flush()
            self.fails(1, "magic", "info", f.name)
        self.assertIn("No such file", line)

    def test_missing_files_named(self):
        """Every command names the file it could not open."""
        missing = "/nonexistent/m.dalle"
        self.fails(1, missing, "generate", "-m", missing, "a")
        self.fails(1, missing, "tokenize", "-m", missing, "a")
        self.fails(1, missing, "decode", "-m", missing, "-o", self.path("o.png"), "1")
        self.fails(1, "encode: cannot read '/nonexistent/i.png'", "encode", "-m", missing, "/nonexistent/i.png")
        self.fails(1, "score: cannot read '/nonexistent/i.png'", "score", "--clip", missing, "a", "/nonexistent/i.png")
        self.fails(1, missing, "score", "--clip", missing, "a", DALLE)  # any readable file as the image

    def test_convert(self):
        r = self.ok("convert", "--help")
        self.assertIn("usage: dalle convert", r.stdout)
        self.assertIn("dalle.convert", r.stdout)  # the converter's own help follows
        # the converter's failure and its exit status come through
        r = run("convert", "/nonexistent/dalle.pt", "-o", self.path("x.dalle"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("/nonexistent/dalle.pt", r.stderr)
        self.fails(127, "convert: cannot run '/nonexistent/python'", "convert", "x.pt",
                   env={"DALLE_PYTHON": "/nonexistent/python"})
        self.fails(1, "DALLE_PYTHONPATH='/nonexistent' holds no dalle/convert.py", "convert", "x.pt",
                   env={"DALLE_PYTHONPATH": "/nonexistent"})

    @unittest.skipUnless(os.path.exists(os.path.join(GOLDEN, "vae_resblocks", "vae.pt")), "no golden checkpoints")
    def test_convert_checkpoint(self):
        out = self.path("vae.dalle")
        # without PYTHONPATH: the command finds the package itself
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DALLE_PYTHONPATH")}
        r = subprocess.run([DALLE, "convert", os.path.join(GOLDEN, "vae_resblocks", "vae.pt"), "-o", out],
                           capture_output=True, text=True, env=env, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("kind dvae", self.ok("info", out).stdout)


@unittest.skipUnless(os.path.exists(DALLE), f"{DALLE} not built")
@have_golden
class CliModels(CliCase):
    def test_info_golden(self):
        r = self.ok("info", "--verify", GOLDEN_BUNDLE)
        self.assertIn("kind dalle", r.stdout)
        self.assertIn("all checksums verified", r.stdout)
        self.assertIn("dalle.text_seq_len", r.stdout)
        self.assertRegex(r.stdout, r"text_emb\.weight\s+f32\s+\[416, 64\]")
        self.assertRegex(r.stdout, r"vae\.codebook\.weight\s+f32\s+\[128, 32\]")

    # ---- tokenize ----------------------------------------------------------

    def test_tokenize(self):
        # DALLE-pytorch's tokenize: no start/end tokens, padded to text_seq_len
        r = self.ok("tokenize", "-m", DALLE_FULL, "a b c")
        self.assertEqual(r.stdout, "320 321 322" + " 0" * 13 + "\n")
        self.assertEqual(self.ok("tokenize", "-m", DALLE_FULL, "a b c", "--raw").stdout, "320 321 322\n")
        self.assertEqual(self.ok("tokenize", "-m", DALLE_FULL, "a b c", "--context-length", "4").stdout,
                         "320 321 322 0\n")
        self.assertEqual(self.ok("tokenize", "-m", DALLE_FULL, "a b c", "--context-length=2", "--truncate").stdout,
                         "320 321\n")
        # OpenAI CLIP's clip.tokenize: <|startoftext|> ids <|endoftext|>
        self.assertEqual(self.ok("tokenize", "-m", OPENAI_CLIP, "a b c").stdout.split()[:6],
                         ["49406", "320", "321", "322", "49407", "0"])
        # a caption starting with '-' after "--"
        self.assertEqual(self.ok("tokenize", "-m", DALLE_FULL, "--raw", "--", "-a").stdout.split()[-1], "320")

    def test_tokenize_matches_golden(self):
        """The ids are SimpleTokenizer.encode's (../shared/golden/tokenizer)."""
        with open(os.path.join(GOLDEN, "tokenizer", "strings.json"), encoding="utf-8") as f:
            case = json.load(f)
        for text, ids in list(zip(case["strings"], case["encode"]))[:8]:
            if "\0" in text or text.startswith("-"):
                continue
            r = self.ok("tokenize", "-m", DALLE_FULL, "--raw", text)
            self.assertEqual([int(x) for x in r.stdout.split()], ids, text)
        if os.path.exists(MERGES):  # a merges file works as well as a bundle
            self.assertEqual(self.ok("tokenize", "-m", MERGES, "a b c").stdout, "320 321 322\n")

    def test_tokenize_errors(self):
        long_caption = " ".join("abcdefghijklmnopqr")  # 18 tokens, the model takes 16
        self.fails(1, re.compile(r"18 tokens.*16.*\(--truncate cuts it\)$"), "tokenize", "-m", DALLE_FULL, long_caption)
        self.fails(1, "not valid UTF-8 (byte 1, 0xFF)", "tokenize", "-m", DALLE_FULL, b"a\xffb")
        self.fails(1, "not valid UTF-8", "tokenize", "-m", DALLE_FULL, b"\xc3\x28")
        self.fails(2, "--raw takes no --context-length", "tokenize", "-m", DALLE_FULL, "a", "--raw", "--truncate")

    # ---- decode / encode ---------------------------------------------------

    def test_decode(self):
        out = self.path("d.png")
        r = self.ok("decode", "-m", DALLE_FULL, "-o", out, *["5"] * 64)
        self.assertEqual(r.stdout, out + "\n")
        self.assertEqual(png_size(out), (32, 32))
        # two images: one grid, ids from a file (commas and new lines)
        ids = self.path("ids.txt")
        with open(ids, "w") as f:
            f.write(",".join(["1"] * 64) + "\n" + " ".join(["127"] * 64) + "\n")
        self.ok("decode", "-m", DALLE_FULL, "-o", out, "--ids-file", ids)
        self.assertEqual(png_size(out), (64, 32))
        # from stdin, with a standalone VAE (64 px, 8x8 tokens of 256)
        self.ok("decode", "-m", VAE, "-o", out, "--ids-file", "-", stdin=" ".join(["255"] * 64))
        self.assertEqual(png_size(out), (64, 64))

    def test_decode_errors(self):
        out = self.path("d.png")
        ok63 = ["1"] * 63
        self.fails(1, "dalle_decode: ids[0][63] = 128 is out of range [0, 128)", "decode", "-m", DALLE_FULL, "-o", out, *ok63, "128")
        self.fails(1, "dalle_decode: ids[0][63] = -5 is out of range [0, 128)", "decode", "-m", DALLE_FULL, "-o", out, *ok63, "-5")
        self.fails(1, "out of range", "decode", "-m", DALLE_FULL, "-o", out, *ok63, "99999999999")
        self.fails(1, "decode: 3 ids: expected a multiple of 64", "decode", "-m", DALLE_FULL, "-o", out, "1", "2", "3")
        self.fails(2, "not both", "decode", "-m", DALLE_FULL, "-o", out, "1", "--ids-file", "x")
        self.fails(1, "decode: cannot open '/nonexistent/ids'", "decode", "-m", DALLE_FULL, "-o", out, "--ids-file", "/nonexistent/ids")
        empty = self.path("empty.txt")
        open(empty, "w").close()
        self.fails(1, "holds no ids", "decode", "-m", DALLE_FULL, "-o", out, "--ids-file", empty)
        self.fails(1, "decode: cannot write '/nonexistent/d.png'", "decode", "-m", DALLE_FULL, "-o", "/nonexistent/d.png", *ok63, "1")
        self.fails(1, "is a model of kind 'clip'", "decode", "-m", CLIP, "-o", out, *ok63, "1")
        self.assertFalse(os.path.exists(out))

    def test_encode_decode_round_trip(self):
        img = self.path("in.png")
        write_png(img, 32, 32, lambda x, y: (x * 8, y * 8, 128))
        r = self.ok("encode", "-m", DALLE_FULL, img, img)
        lines = r.stdout.splitlines()
        self.assertEqual(len(lines), 2)
        ids = [int(x) for x in lines[0].split()]
        self.assertEqual(len(ids), 64)
        self.assertTrue(all(0 <= i < 128 for i in ids))
        self.assertEqual(lines[0], lines[1])
        # a non-square image of another size is scaled and cropped
        wide = self.path("wide.png")
        write_png(wide, 50, 40, lambda x, y: (x * 5, y * 6, 0))
        self.assertEqual(len(self.ok("encode", "-m", VAE, wide).stdout.split()), 64)
        # encode | decode
        ids_file = self.path("ids.txt")
        with open(ids_file, "w") as f:
            f.write(r.stdout)
        self.ok("decode", "-m", DALLE_FULL, "-o", self.path("rt.png"), "--ids-file", ids_file)
        self.assertEqual(png_size(self.path("rt.png")), (64, 32))

    def test_encode_errors(self):
        bad = self.path("bad.png")
        with open(bad, "wb") as f:
            f.write(b"this is not an image")
        self.fails(1, bad, "encode", "-m", DALLE_FULL, bad)
        self.fails(1, "is a model of kind 'openai_clip'", "encode", "-m", OPENAI_CLIP, bad)

    # ---- generate ----------------------------------------------------------

    def generate(self, *args):
        r = self.ok("generate", "-m", DALLE_FULL, *args)
        self.assertEqual(r.stderr, "")  # quiet: stderr is not a terminal
        lines = r.stdout.splitlines()
        self.assertRegex(lines[0], r"^seed \d+$")
        return lines[1:]

    def test_generate(self):
        prefix = self.path("g")
        files = self.generate("a b c", "-n", "3", "--seed", "7", "-o", prefix, "--grid", self.path("grid.png"))
        self.assertEqual(files, [f"{prefix}-{i:03d}.png" for i in range(3)] + [self.path("grid.png")])
        for f in files[:3]:
            self.assertEqual(png_size(f), (32, 32))
        self.assertEqual(png_size(self.path("grid.png")), (64, 64))  # 2x2 grid, one cell empty
        # the same seed gives the same images whatever the batch size and
        # thread count: image i depends only on the seed and i
        again = self.generate("a b c", "-n", "3", "-b", "1", "--seed", "7", "-o", self.path("h"),
                              "--filter-thres", "0.5", "--temperature", "1", "--cond-scale", "1", "-t", "1")
        for a, b in zip(files[:3], again):
            with open(a, "rb") as f1, open(b, "rb") as f2:
                self.assertEqual(f1.read(), f2.read())
        images = set()
        for f in files[:3]:
            with open(f, "rb") as fh:
                images.add(fh.read())
        self.assertEqual(len(images), 3, "three different images")
        # the default seed comes from the clock and is printed
        self.generate("a", "--grid", self.path("one.png"))
        self.assertEqual(png_size(self.path("one.png")), (32, 32))

    def test_generate_backend(self):
        """--backend auto gives the CPU's images where no GPU works; --backend
        cuda either runs on a GPU or fails with one line saying why."""
        cpu = self.generate("a b", "-n", "2", "--seed", "3", "-o", self.path("cpu"))
        auto = self.generate("a b", "-n", "2", "--seed", "3", "-o", self.path("auto"),
                             "--backend", "auto", "--device", "0")
        r = run("generate", "-m", DALLE_FULL, "a b", "-n", "2", "--seed", "3", "-o",
                self.path("cuda"), "--backend", "cuda")
        if r.returncode == 0:  # a GPU: the same model, not the same pictures
            return
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertRegex(r.stderr.strip(), r"^dalle: backend cuda: .*libdalle was built with(out)? CUDA")
        for a, b in zip(cpu, auto):  # no GPU here: auto is the CPU, bit for bit
            with open(a, "rb") as f1, open(b, "rb") as f2:
                self.assertEqual(f1.read(), f2.read())
        for cmd in ("encode", "decode", "score"):
            h = self.ok(cmd, "--help").stdout
            self.assertIn("--backend B", h, cmd)
            self.assertIn("--device N", h, cmd)

    def test_generate_rerank(self):
        """--clip writes the images best first with their scores, and the
        scores are what `dalle score` gives for the files."""
        lines = self.generate("a b c", "-n", "4", "-b", "2", "--seed", "1", "-o", self.path("r"),
                              "--clip", CLIP, "--cond-scale", "2")
        scores = [float(line.split("\t")[1]) for line in lines]
        self.assertEqual(scores, sorted(scores, reverse=True))
        files = [line.split("\t")[0] for line in lines]
        r = self.ok("score", "--clip", CLIP, "a b c", *reversed(files))
        self.assertEqual([line.split("\t")[1] for line in r.stdout.splitlines()], files)
        self.assertEqual([float(line.split("\t")[0]) for line in r.stdout.splitlines()], scores)

    def test_generate_prime(self):
        img = self.path("prime.png")
        write_png(img, 32, 32, lambda x, y: (255 * (x < 16), 255 * (y < 16), 64))
        self.generate("a", "--prime", img, "--seed", "3", "-o", self.path("p"))  # default: 28 of 64 tokens
        # primed with all 64 tokens, nothing is sampled: the image is
        # decode(encode(prime))
        self.generate("a", "--prime", img, "--prime-tokens", "64", "-o", self.path("all"))
        ids = self.ok("encode", "-m", DALLE_FULL, img).stdout
        self.ok("decode", "-m", DALLE_FULL, "-o", self.path("rt.png"), *ids.split())
        with open(self.path("all-000.png"), "rb") as f1, open(self.path("rt.png"), "rb") as f2:
            self.assertEqual(f1.read(), f2.read())
        self.fails(1, "generate: --prime-tokens 65: the model has only 64 image tokens",
                   "generate", "-m", DALLE_FULL, "a", "--prime", img, "--prime-tokens", "65")
        self.fails(1, "generate: cannot read --prime image '/nonexistent.png'",
                   "generate", "-m", DALLE_FULL, "a", "--prime", "/nonexistent.png")

    def test_generate_errors(self):
        out = ["-o", self.path("e")]
        self.fails(1, re.compile(r"-m: '.*clip_dalle_pytorch.dalle' is a model of kind 'clip'.*\(a CLIP model goes to --clip\)"),
                   "generate", "-m", CLIP, "a", *out)
        self.fails(1, "is a model of kind 'dvae'; -m wants a DALL-E model", "generate", "-m", VAE, "a", *out)
        self.fails(1, "--clip: ", "generate", "-m", DALLE_FULL, "a", "--clip", DALLE_FULL, *out)
        self.fails(1, "/nonexistent/c.dalle", "generate", "-m", DALLE_FULL, "a", "--clip", "/nonexistent/c.dalle", *out)
        long_caption = " ".join("abcdefghijklmnopqr")
        self.fails(1, "the text is 18 tokens, more than context_length 16", "generate", "-m", DALLE_FULL, long_caption, *out)
        self.fails(1, "not valid UTF-8 (byte 1, 0xFF)", "generate", "-m", DALLE_FULL, b"a\xffb", *out)
        # 'the' is a real BPE token (518) outside this tiny model's 400 text ids
        self.fails(1, "generate: the caption's token 518 (position 0) is outside the text vocabulary",
                   "generate", "-m", DALLE_FULL, "the", *out)
        self.fails(1, "generate: cannot write '/nonexistent/dir/x'", "generate", "-m", DALLE_FULL, "a", "-o", "/nonexistent/dir/x")
        self.fails(1, "generate: cannot write '/nonexistent/g.png'", "generate", "-m", DALLE_FULL, "a", "--grid", "/nonexistent/g.png")
        self.assertEqual(os.listdir(self.tmp), [])

    def test_generate_interrupt(self):
        """Ctrl-C stops between tokens; the finished batches are written;
        exit status 130. stderr is a terminal here, so the bar is drawn."""
        master, slave = pty.openpty()
        prefix = self.path("i")
        p = subprocess.Popen([DALLE, "generate", "-m", DALLE_FULL, "a b", "-n", "3000", "-b", "1", "-t", "1",
                              "--seed", "5", "-o", prefix],
                             stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL)
        os.close(slave)
        seen = b""
        deadline = time.time() + 20
        try:
            # wait for a few redraws of the bar (it redraws at most 10 times a second)
            while time.time() < deadline and seen.count(b"\r") < 3 and p.poll() is None:
                if select.select([master], [], [], 0.2)[0]:
                    seen += os.read(master, 4096)
            p.send_signal(signal.SIGINT)
            out, _ = p.communicate(timeout=30)
            while select.select([master], [], [], 0.2)[0]:
                chunk = os.read(master, 4096)
                if not chunk:
                    break
                seen += chunk
        except OSError:  # the pty closes with the process
            pass
        finally:
            os.close(master)
            if p.poll() is None:
                p.kill()
        self.assertEqual(p.returncode, 130, seen)
        text = seen.decode()
        self.assertRegex(text, r"\d+/192000 tokens +[\d.]+ tokens/s +ETA \d+:\d\d")
        m = re.search(r"dalle: generate: interrupted: wrote the (\d+) of 3000 images finished", text)
        self.assertTrue(m, text)
        n = int(m.group(1))
        self.assertTrue(0 < n < 3000)
        written = out.decode().splitlines()[1:]
        self.assertEqual(written, [f"{prefix}-{i:03d}.png" for i in range(n)])
        self.assertEqual(sorted(os.listdir(self.tmp)), [os.path.basename(w) for w in written])

    # ---- score ---------------------------------------------------------------

    def test_score(self):
        a, b = self.path("a.png"), self.path("b.png")
        write_png(a, 32, 32, lambda x, y: (200, 30, 30))
        write_png(b, 48, 40, lambda x, y: (x * 5, 0, y * 6))  # scaled and cropped to 32
        r = self.ok("score", "--clip", CLIP, "a b c", a, b)
        lines = [line.split("\t") for line in r.stdout.splitlines()]
        self.assertEqual(sorted(name for _, name in lines), [a, b])
        scores = [float(s) for s, _ in lines]
        self.assertEqual(scores, sorted(scores, reverse=True))

    def test_score_errors(self):
        a = self.path("a.png")
        write_png(a, 32, 32, lambda x, y: (1, 2, 3))
        self.fails(1, "--clip: ", "score", "--clip", DALLE_FULL, "a", a)
        self.fails(1, "not valid UTF-8", "score", "--clip", CLIP, b"\xff", a)
        bad = self.path("bad.png")
        with open(bad, "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n truncated")
        self.fails(1, bad, "score", "--clip", CLIP, "a", bad)
        # the test OpenAI CLIP has 500 text ids, so clip.tokenize's
        # <|startoftext|> (49406) is out of its range: the library says so
        self.fails(1, "text[0] = 49406 is out of range [0, 500)", "score", "--clip", OPENAI_CLIP, "a", a)


if __name__ == "__main__":
    unittest.main()
