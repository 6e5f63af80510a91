"""The shipped demo model (models/, docs/demo-model.md): it loads, draws the
README's caption so that the synthetic world's judge accepts the CLIP-best of
8 at a fixed seed, and `dalle judge` runs on a few held-out captions and
prints its table."""
import os
import subprocess
import tempfile
import unittest

from test_cli import DALLE, png_size, run

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(HERE, "..", "..", "models")
MODEL = os.path.join(MODELS, "demo.dalle")
CLIP = os.path.join(MODELS, "demo-clip.dalle")
CAPTION = "a green triangle on a yellow background"
# the world the demo model was trained on (models/README.md)
WORLD = ["--world-colors", "8", "--world-shapes", "4", "--world-objects", "1",
         "--world-layouts", "0"]

shipped = unittest.skipUnless(os.path.exists(MODEL) and os.path.exists(CLIP),
                              "models/demo.dalle or models/demo-clip.dalle absent")


@shipped
class DemoModel(unittest.TestCase):
    def test_info(self):
        r = run("info", MODEL)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("dalle", r.stdout)

    def test_readme_caption(self):
        with tempfile.TemporaryDirectory() as tmp:
            prefix = os.path.join(tmp, "demo")
            r = run("generate", "-m", MODEL, "--clip", CLIP, CAPTION, "-n", "8", "--seed", "1",
                    "-o", prefix, "-t", "2")
            self.assertEqual(r.returncode, 0, r.stderr)
            best = prefix + "-000.png"  # written best first
            self.assertEqual(png_size(best), (32, 32))
            r = run("judge", "--image", best, "--caption", CAPTION, "--size", "32")
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("PASS", r.stdout)

    def test_judge_table(self):
        r = run("judge", "-m", MODEL, "--clip", CLIP, "-n", "4", "-s", "2", "-t", "2", *WORLD,
                timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("judged 4 held-out captions", r.stdout)
        for row in ("colour", "shape", "position", "background", "all"):
            self.assertRegex(r.stdout, r"(?m)^%s\s" % row)
        self.assertIn("CLIP-best of 2", r.stdout)


class JudgeCommand(unittest.TestCase):
    def test_help(self):
        r = run("judge", "--help")
        self.assertEqual(r.returncode, 0, r.stderr)
        for word in ("held-out", "colour", "shape", "position", "background", "--clip",
                     "--samples", "--image"):
            self.assertIn(word, r.stdout)

    def test_usage_errors(self):
        for args, needle in ((("judge",), "a model is needed"),
                             (("judge", "--image", "x.png"), "go together")):
            r = run(*args)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
            self.assertIn(needle, r.stderr)

    def test_train_bpe(self):
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "m.txt")
            r = run("train-bpe", "--synthetic", "200", *WORLD, "-o", out)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("merges", r.stdout)
            r = run("tokenize", "-m", out, CAPTION)
            self.assertEqual(r.returncode, 0, r.stderr)


if __name__ == "__main__":
    unittest.main()
