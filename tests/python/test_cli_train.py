"""`dalle train-dalle` as a user meets it: help, one-line errors, a tiny run
on the synthetic world and on a folder whose model `dalle generate` uses at
once, resuming from the checkpoint, and Ctrl-C saving one."""
import os
import signal
import subprocess
import tempfile
import time
import unittest

from test_cli import DALLE, DALLE_FULL, VAE, CLIP, png_size, run, write_png

have_golden = unittest.skipUnless(all(os.path.exists(b) for b in (DALLE_FULL, VAE, CLIP)),
                                  "golden bundles not built (../shared/golden absent)")

# a model small enough to train in a second or two
TINY = ["--dim", "32", "--depth", "1", "--heads", "2", "--dim-head", "16", "--text-seq-len", "24",
        "--num-text-tokens", "auto", "--batch", "4", "--threads", "2", "--log-every", "2"]


def one_line_error(test, r, code, needle):
    test.assertEqual(r.returncode, code, r.stderr)
    lines = r.stderr.strip().splitlines()
    test.assertEqual(len(lines), 1, r.stderr)
    test.assertTrue(lines[0].startswith("dalle: "), lines[0])
    test.assertIn(needle, lines[0])


class TrainDalleHelp(unittest.TestCase):
    def test_help(self):
        r = run("train-dalle", "--help")
        self.assertEqual(r.returncode, 0, r.stderr)
        for opt in ("--vae", "--bpe", "--data", "--synthetic", "--resume", "--save-every",
                    "--steps", "--lr", "--dim-head", "--text-seq-len"):
            self.assertIn(opt, r.stdout)
        self.assertIn("train-dalle", run("--help").stdout)

    def test_usage_errors(self):
        one_line_error(self, run("train-dalle"), 2, "an output file is needed")
        one_line_error(self, run("train-dalle", "-o", "x.dalle"), 2, "a VAE is needed")
        one_line_error(self, run("train-dalle", "--vae", "v", "-o", "x.dalle"), 2,
                       "--data DIR or --synthetic N")
        one_line_error(self, run("train-dalle", "--vae", "v", "-o", "x", "--data", "d",
                                 "--synthetic", "3"), 2, "one of them")
        one_line_error(self, run("train-dalle", "--steps", "0"), 2, "--steps: 0 is out of range")
        one_line_error(self, run("train-dalle", "--lr", "abc"), 2, "not a finite number")
        one_line_error(self, run("train-dalle", "--bogus"), 2, "unknown option '--bogus'")
        one_line_error(self, run("train-dalle", "--vae", "v", "-o", "x", "--synthetic", "3",
                                 "--num-text-tokens", "lots"), 2, "--num-text-tokens")
        one_line_error(self, run("train-dalle", "--vae", "v", "-o", "x", "--synthetic", "3",
                                 "--cosine", "--lr-decay"), 2, "exclude")


@have_golden
class TrainDalleRun(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name
        self.out = os.path.join(self.dir, "m.dalle")

    def tearDown(self):
        self.tmp.cleanup()

    def test_errors_of_a_run(self):
        one_line_error(self, run("train-dalle", "--vae", CLIP, "--bpe", DALLE_FULL, "--synthetic",
                                 "8", "-o", self.out), 1, "kind 'clip'")
        one_line_error(self, run("train-dalle", "--vae", VAE, "--bpe", DALLE_FULL, "--data",
                                 os.path.join(self.dir, "none"), "-o", self.out), 1, "none")
        one_line_error(self, run("train-dalle", "--vae", VAE, "--bpe", DALLE_FULL, "--synthetic",
                                 "8", "-o", self.out, "--num-text-tokens", "10", *TINY[:10]), 1,
                       "token id")
        one_line_error(self, run("train-dalle", "--vae", VAE, "--bpe", DALLE_FULL, "--synthetic",
                                 "8", "-o", self.out, "--text-seq-len", "2"), 1, "more than")
        one_line_error(self, run("train-dalle", "--vae", VAE, "--bpe", DALLE_FULL, "--synthetic",
                                 "2", "-o", self.out, *TINY), 1, "fewer than the batch")
        one_line_error(self, run("train-dalle", "--vae", VAE, "--synthetic", "4", "-o",
                                 os.path.join(self.dir, "no", "m.dalle")), 1, "cannot write")
        self.assertFalse(os.path.exists(self.out))

    def test_synthetic_run_generate_resume(self):
        r = run("train-dalle", "--vae", VAE, "--bpe", DALLE_FULL, "--synthetic", "16", "-o",
                self.out, "--steps", "6", "--save-every", "4", *TINY, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        # not a terminal: one line every --log-every steps, with loss, tokens/s and ETA
        steps = [l for l in r.stderr.splitlines() if l.startswith("step ")]
        self.assertEqual([l.split()[1] for l in steps], ["2/6", "4/6", "6/6"], r.stderr)
        for word in ("loss", "tokens/s", "ETA"):
            self.assertIn(word, steps[-1])
        self.assertNotIn("\r", r.stderr)
        self.assertTrue(os.path.exists(self.out + ".ckpt"))
        # the model generates at once: its own tokenizer and VAE
        prefix = os.path.join(self.dir, "g")
        g = run("generate", "-m", self.out, "a red circle", "-o", prefix, "--seed", "1")
        self.assertEqual(g.returncode, 0, g.stderr)
        self.assertEqual(png_size(prefix + "-000.png"), (64, 64))
        info = run("info", self.out)
        self.assertIn('"dalle"', info.stdout)
        self.assertIn("tokenizer.bpe_merges", info.stdout)
        self.assertNotIn("train.adam", info.stdout)  # the model has no optimiser state
        # resume: on from step 6
        r2 = run("train-dalle", "--resume", self.out + ".ckpt", "--synthetic", "16", "-o",
                 self.out, "--steps", "8", "--log-every", "1", "--threads", "1", timeout=120)
        self.assertEqual(r2.returncode, 0, r2.stderr)
        self.assertIn("from step 6 to 8", r2.stderr)
        self.assertIn("step 8/8", r2.stderr)

    def test_folder_run(self):
        data = os.path.join(self.dir, "data")
        os.makedirs(os.path.join(data, "sub"))
        colours = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255),
                   "yellow": (255, 255, 0)}
        for i, (name, rgb) in enumerate(colours.items()):
            stem = os.path.join(data, "sub" if i % 2 else "", f"{i:03d}")
            write_png(stem + ".png", 40, 32, lambda x, y, rgb=rgb: rgb if x > 10 else (0, 0, 0))
            with open(stem + ".txt", "w") as f:
                f.write(f"a {name} square\n\nsomething {name}\n")
        write_png(os.path.join(data, "lonely.png"), 8, 8, lambda x, y: (1, 2, 3))
        r = run("train-dalle", "--vae", VAE, "--bpe", DALLE_FULL, "--data", data, "-o", self.out,
                "--steps", "2", *TINY, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("4 pairs (1 files skipped)", r.stderr)
        self.assertTrue(os.path.exists(self.out))

    def test_ctrl_c_saves_a_checkpoint(self):
        p = subprocess.Popen([DALLE, "train-dalle", "--vae", VAE, "--bpe", DALLE_FULL,
                              "--synthetic", "16", "-o", self.out, "--steps", "1000000",
                              *TINY[:-2], "--log-every", "1"],
                             stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.time() + 60
            while time.time() < deadline:
                line = p.stderr.readline()
                if line.startswith("step "):
                    break
            p.send_signal(signal.SIGINT)
            _, err = p.communicate(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
        self.assertEqual(p.returncode, 130, err)
        self.assertIn("interrupted at step", err)
        self.assertTrue(os.path.exists(self.out + ".ckpt"))
        self.assertTrue(os.path.exists(self.out))


if __name__ == "__main__":
    unittest.main()
