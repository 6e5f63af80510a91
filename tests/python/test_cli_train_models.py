"""`dalle train-vae` and `dalle train-clip` as a user meets them: help,
one-line errors, and a tiny chain of runs whose outputs the other commands
take as they are: train-vae -> train-dalle --vae -> generate, train-clip ->
generate --clip / score; resuming and Ctrl-C checkpoints."""
import os
import signal
import subprocess
import tempfile
import time
import unittest

from test_cli import DALLE, MERGES, png_size, run, write_png
from test_cli_train import one_line_error

have_merges = unittest.skipUnless(os.path.exists(MERGES), "CLIP's merges file absent")

WORLD = ["--world-colors", "3", "--world-shapes", "2", "--world-objects", "1",
         "--world-layouts", "0"]
# models small enough to train in well under a second
VAE_TINY = ["--image-size", "32", "--num-tokens", "32", "--codebook-dim", "16", "--num-layers",
            "2", "--num-resnet-blocks", "0", "--hidden-dim", "8", "--batch", "4", "--threads",
            "2", "--log-every", "2", *WORLD]
CLIP_TINY = ["--dim", "16", "--depth", "1", "--heads", "1", "--image-size", "32",
             "--patch-size", "8", "--text-seq-len", "12", "--num-text-tokens", "auto",
             "--batch", "4", "--threads", "2", "--log-every", "2", *WORLD]


class Help(unittest.TestCase):
    def test_help(self):
        r = run("train-vae", "--help")
        self.assertEqual(r.returncode, 0, r.stderr)
        for opt in ("--data", "--synthetic", "--image-size", "--num-tokens", "--codebook-dim",
                    "--num-layers", "--num-resnet-blocks", "--hidden-dim", "--resume",
                    "--save-every", "--world-colors", "--world-layouts"):
            self.assertIn(opt, r.stdout)
        r = run("train-clip", "--help")
        self.assertEqual(r.returncode, 0, r.stderr)
        for opt in ("--bpe", "--data", "--synthetic", "--dim", "--depth", "--patch-size",
                    "--text-seq-len", "--num-text-tokens", "--resume", "--world-objects"):
            self.assertIn(opt, r.stdout)
        self.assertIn("--world-shapes", run("train-dalle", "--help").stdout)
        top = run("--help").stdout
        self.assertIn("train-vae", top)
        self.assertIn("train-clip", top)

    def test_usage_errors(self):
        one_line_error(self, run("train-vae"), 2, "an output file is needed")
        one_line_error(self, run("train-vae", "-o", "x"), 2, "--data DIR or --synthetic N")
        one_line_error(self, run("train-vae", "-o", "x", "--synthetic", "4", "--image-size",
                                 "48"), 2, "a power of 2")
        one_line_error(self, run("train-vae", "--world-colors", "9"), 2, "--world-colors")
        one_line_error(self, run("train-vae", "--bogus"), 2, "unknown option '--bogus'")
        one_line_error(self, run("train-clip", "-o", "x", "--synthetic", "4"), 2,
                       "a tokenizer is needed")
        one_line_error(self, run("train-clip", "-o", "x", "--bpe", "b", "--synthetic", "4",
                                 "--image-size", "32", "--patch-size", "5"), 2,
                       "not a multiple")
        one_line_error(self, run("train-clip", "-o", "x", "--bpe", "b", "--synthetic", "4",
                                 "--num-text-tokens", "many"), 2, "--num-text-tokens")
        one_line_error(self, run("train-dalle", "--world-objects", "3"), 2, "--world-objects")


class Runs(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.dir, name)

    def merges(self):
        """CLIP's merges file where ../shared has it, else a vocabulary learned
        here with `dalle train-bpe`, so the chain also runs on a user's machine."""
        if os.path.exists(MERGES):
            return MERGES
        merges = self.path("merges.txt")
        r = run("train-bpe", "--synthetic", "200", "-o", merges)
        self.assertEqual(r.returncode, 0, r.stderr)
        return merges

    def test_errors_of_a_run(self):
        one_line_error(self, run("train-vae", "--synthetic", "2", "-o", self.path("v.dalle"),
                                 *VAE_TINY), 1, "fewer than the batch")
        one_line_error(self, run("train-vae", "--data", self.path("none"), "-o",
                                 self.path("v.dalle"), *VAE_TINY), 1, "none")
        one_line_error(self, run("train-vae", "--synthetic", "4", "-o",
                                 self.path("no/v.dalle")), 1, "cannot write")
        one_line_error(self, run("train-clip", "--bpe", self.path("none.txt"), "--synthetic", "4",
                                 "-o", self.path("c.dalle")), 1, "none.txt")
        one_line_error(self, run("train-vae", "--resume", self.path("none.ckpt"), "--synthetic",
                                 "4", "-o", self.path("v.dalle")), 1, "none.ckpt")
        self.assertFalse(os.path.exists(self.path("v.dalle")))

    def test_vae_then_dalle_then_generate(self):
        vae = self.path("vae.dalle")
        r = run("train-vae", "--synthetic", "16", "-o", vae, "--steps", "6", "--save-every", "4",
                *VAE_TINY, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        steps = [l for l in r.stderr.splitlines() if l.startswith("step ")]
        self.assertEqual([l.split()[1] for l in steps], ["2/6", "4/6", "6/6"], r.stderr)
        for word in ("loss", "recon", "temp", "images/s", "ETA"):
            self.assertIn(word, steps[-1])
        self.assertIn('"dvae"', run("info", vae).stdout)
        self.assertNotIn("train.adam", run("info", vae).stdout)
        self.assertIn("train.adam", run("info", vae + ".ckpt").stdout)
        # resume on from step 6
        r = run("train-vae", "--resume", vae + ".ckpt", "--synthetic", "16", "-o", vae, "--steps",
                "8", "--log-every", "1", *WORLD, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("from step 6 to 8", r.stderr)
        # the VAE is train-dalle's --vae, and the model generates at its size
        model = self.path("m.dalle")
        r = run("train-dalle", "--vae", vae, "--bpe", self.merges(), "--synthetic", "16", "-o", model,
                "--steps", "2", "--dim", "16", "--depth", "1", "--heads", "1", "--dim-head", "16",
                "--text-seq-len", "12", "--num-text-tokens", "auto", "--batch", "4",
                "--threads", "2", *WORLD, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        prefix = self.path("g")
        g = run("generate", "-m", model, "a red circle", "-o", prefix, "--seed", "1")
        self.assertEqual(g.returncode, 0, g.stderr)
        self.assertEqual(png_size(prefix + "-000.png"), (32, 32))

    @have_merges
    def test_clip_then_score_and_rerank(self):
        data = self.path("data")
        os.makedirs(data)
        colours = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255),
                   "yellow": (255, 255, 0)}
        for i, (name, rgb) in enumerate(colours.items()):
            write_png(os.path.join(data, f"{i}.png"), 40, 32,
                      lambda x, y, rgb=rgb: rgb if x > 10 else (0, 0, 0))
            with open(os.path.join(data, f"{i}.txt"), "w") as f:
                f.write(f"a {name} square\n")
        clip = self.path("clip.dalle")
        r = run("train-clip", "--bpe", MERGES, "--data", data, "-o", clip, "--steps", "4",
                *CLIP_TINY, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("4 images (0 files skipped)", r.stderr)
        steps = [l for l in r.stderr.splitlines() if l.startswith("step ")]
        for word in ("loss", "accuracy", "pairs/s", "ETA"):
            self.assertIn(word, steps[-1])
        info = run("info", clip).stdout
        self.assertIn('"clip"', info)
        self.assertIn("tokenizer.bpe_merges", info)
        # it scores as a CLIP bundle: its own tokenizer, its own image size
        s = run("score", "--clip", clip, "a red square", os.path.join(data, "0.png"),
                os.path.join(data, "2.png"))
        self.assertEqual(s.returncode, 0, s.stderr)
        self.assertEqual(len(s.stdout.strip().splitlines()), 2, s.stdout)
        # synthetic data, resumed
        r = run("train-clip", "--bpe", MERGES, "--synthetic", "8", "-o", clip, "--steps", "2",
                *CLIP_TINY, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = run("train-clip", "--resume", clip + ".ckpt", "--synthetic", "8", "-o", clip,
                "--steps", "3", "--log-every", "1", *WORLD, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("from step 2 to 3", r.stderr)

    def test_ctrl_c_saves_a_checkpoint(self):
        out = self.path("v.dalle")
        p = subprocess.Popen([DALLE, "train-vae", "--synthetic", "16", "-o", out, "--steps",
                              "100000000", *VAE_TINY[:-10], "--log-every", "1"],
                             stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.time() + 60
            while time.time() < deadline:
                if p.stderr.readline().startswith("step "):
                    break
            p.send_signal(signal.SIGINT)
            _, err = p.communicate(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
        self.assertEqual(p.returncode, 130, err)
        self.assertIn("interrupted at step", err)
        self.assertTrue(os.path.exists(out + ".ckpt"))
        self.assertTrue(os.path.exists(out))


if __name__ == "__main__":
    unittest.main()
