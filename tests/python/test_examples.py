"""The examples in examples/ build and run as their comments say."""
import os
import struct
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
BUILD = os.environ.get("DALLE_BUILD_DIR", os.path.join(REPO, "build"))
MODEL = os.path.join(BUILD, "tests", "dalle_full.dalle")
CLIP = os.path.join(BUILD, "tests", "clip_dalle_pytorch.dalle")


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])


@unittest.skipUnless(os.path.exists(MODEL) and os.path.exists(CLIP),
                     "golden bundles not built (../shared/golden absent)")
class Examples(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def run_ok(self, args, **kw):
        r = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=self.tmp.name, **kw)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def test_generate_c(self):
        out = os.path.join(self.tmp.name, "one.png")
        self.run_ok([os.path.join(BUILD, "examples", "generate"), MODEL, "a b c", out])
        self.assertEqual(png_size(out), (32, 32))

    def test_generate_c_errors(self):
        r = subprocess.run([os.path.join(BUILD, "examples", "generate"), CLIP, "a", "x.png"],
                           capture_output=True, text=True, cwd=self.tmp.name)
        self.assertEqual(r.returncode, 1)
        self.assertIn("clip_ctx_create", r.stderr)

    def test_rerank_c(self):
        out = self.run_ok([os.path.join(BUILD, "examples", "rerank"), MODEL, CLIP, "a b c", "5"])
        lines = out.splitlines()
        self.assertEqual(len(lines), 5)
        scores = [float(line.rsplit(" ", 1)[1]) for line in lines]
        self.assertEqual(scores, sorted(scores, reverse=True))
        images = sorted(int(line.split("\t")[1].split()[1]) for line in lines)
        self.assertEqual(images, list(range(5)))
        for r in range(5):
            self.assertEqual(png_size(os.path.join(self.tmp.name, f"rank-{r}.png")), (32, 32))

    def test_generate_py(self):
        env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "bindings", "python"))
        out = self.run_ok([sys.executable, os.path.join(REPO, "examples", "generate.py"), MODEL, "a b c",
                           "--clip", CLIP, "-n", "3", "-o", "py"], env=env)
        lines = out.splitlines()
        self.assertEqual([line.split()[0] for line in lines], [f"py-{i}.png" for i in range(3)])
        scores = [float(line.split()[-1]) for line in lines]
        self.assertEqual(scores, sorted(scores, reverse=True))
        self.assertEqual(png_size(os.path.join(self.tmp.name, "py-0.png")), (32, 32))


if __name__ == "__main__":
    unittest.main()
