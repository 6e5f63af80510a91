"""The Python binding of the synthetic world, its judge and the BPE learner
(bindings/python/dalle/synth.py over dalle_synth_* / dalle_bpe_*): drawn
items judged back, the held-out captions `dalle judge` uses, scenes both
ways, learnt merges a tokenizer loads, and errors.

    DALLE_BUILD_DIR=build PYTHONPATH=bindings/python \\
        python3 -m unittest -v test_binding_synth      # in tests/python
"""

import array
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
if os.path.join(REPO, "bindings", "python") not in sys.path:
    sys.path.insert(0, os.path.join(REPO, "bindings", "python"))

import dalle  # noqa: E402
from dalle import _arrays  # noqa: E402

BUILD = os.environ.get("DALLE_BUILD_DIR") or os.path.join(REPO, "build")
DALLE_EXE = os.path.join(BUILD, "examples", "dalle")


def tolist(x):
    return x.tolist() if hasattr(x, "tolist") else x


def flat(pixels):
    if hasattr(pixels, "tolist"):
        pixels = pixels.tolist()
    return [v for ch in pixels for row in ch for v in row]


class World(unittest.TestCase):
    def test_sample_is_judged_back(self):
        g = dalle.Synth(5, split="any")
        passed = 0
        for i in range(40):
            caption, pixels = g.sample(i, 32)
            self.assertEqual(_arrays.shape_of(pixels), (3, 32, 32))
            v = dalle.judge(pixels, caption)
            self.assertGreaterEqual(v.asked, 2)
            passed += v.passed
            self.assertEqual(v.seen.background, g.scene(i).background)
        self.assertEqual(passed, 40)

    def test_outputs_agree(self):
        g = dalle.Synth(9)
        caption, pixels = g.sample(3, 24)
        self.assertEqual(g.caption(3), caption)
        self.assertEqual(flat(g.pixels(3, 24)), flat(pixels))
        c2, p2 = dalle.synth_sample(9, 3, 24)
        self.assertEqual((c2, flat(p2)), (caption, flat(pixels)))
        scene = g.scene(3)
        self.assertIn(scene.objects[0].color, dalle.synth.COLORS)
        self.assertIn(scene.objects[0].shape, caption)
        self.assertTrue(dalle.judge_scene(pixels, scene).passed)

    def test_bytes_and_batch_of_one(self):
        caption, pixels = dalle.synth_sample(1, 0, 32)
        raw = array.array("f", flat(pixels)).tobytes()
        self.assertTrue(dalle.judge(raw, caption).passed)
        self.assertTrue(dalle.judge([tolist(pixels)], caption).passed)

    def test_heldout_captions(self):
        caps = dalle.heldout_captions(20, seed=0)
        self.assertEqual(len(caps), 20)
        for c in caps:
            s = dalle.parse_caption(c)
            self.assertIn("background", s.says)
            self.assertTrue(dalle.is_heldout(s.objects[0].color, s.objects[0].shape,
                                             s.background))
        g = dalle.Synth(0, split="train")
        for i in range(50):
            s = g.scene(i)
            for o in s.objects:
                self.assertFalse(dalle.is_heldout(o.color, o.shape, s.background))

    @unittest.skipUnless(os.path.exists(os.path.join(REPO, "models", "demo.dalle")) and
                         os.path.exists(DALLE_EXE), "demo model or dalle command absent")
    def test_heldout_captions_are_dalle_judges(self):
        world = ["--world-colors", "8", "--world-shapes", "4", "--world-objects", "1",
                 "--world-layouts", "0"]
        r = subprocess.run([DALLE_EXE, "judge", "-m", os.path.join(REPO, "models", "demo.dalle"),
                            "-n", "3", "-s", "1", "-t", "1", "-v", "--seed", "4"] + world,
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        caps = dalle.heldout_captions(3, seed=4, colors=8, shapes=4, max_objects=1, layouts=0)
        for i, c in enumerate(caps):
            self.assertIn(f"{i:3d}  {c} ", r.stdout)

    def test_scenes(self):
        s = dalle.parse_caption("a small red circle in the top left corner on a blue background")
        self.assertEqual(s.says, frozenset({"size", "position", "background"}))
        o = s.objects[0]
        self.assertEqual((o.color, o.shape, o.size, o.position), ("red", "circle", "small",
                                                                  "top left"))
        self.assertEqual(s.background, "blue")
        pair = dalle.parse_caption("a green cross left of a white square")
        self.assertEqual(pair.relation, "left of")
        self.assertIsNone(pair.background)
        self.assertEqual([x.shape for x in pair.objects], ["cross", "square"])
        # a hand-made scene judged against a drawn picture
        g = dalle.Synth(2, max_objects=1, layouts=0)
        scene = g.scene(0)
        want = dalle.Scene([dalle.SceneObject(scene.objects[0].color, scene.objects[0].shape)],
                           background=scene.background, says=frozenset({"background"}))
        v = dalle.judge_scene(g.pixels(0, 32), want)
        self.assertTrue(v.passed)
        self.assertEqual((v.position, v.size), (None, None))
        wrong = dalle.Scene([dalle.SceneObject(scene.objects[0].color, scene.objects[0].shape)],
                            background=[c for c in dalle.synth.COLORS
                                        if c != scene.background][0],
                            says=frozenset({"background"}))
        v = dalle.judge_scene(g.pixels(0, 32), wrong)
        self.assertEqual((v.color, v.shape, v.background, v.passed), (True, True, False, False))
        seen = dalle.read_scene(g.pixels(0, 32), 1)
        self.assertEqual(seen.objects[0].color, scene.objects[0].color)

    def test_palette(self):
        self.assertEqual(len(dalle.palette("black")), 3)
        self.assertAlmostEqual(dalle.palette(0)[0], 0.9, places=6)
        with self.assertRaises(dalle.DalleError):
            dalle.palette(8)
        with self.assertRaises(ValueError):
            dalle.palette("mauve")

    def test_write_folder(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "world")
            g = dalle.Synth(3)
            g.write_folder(out, 4, size=16, n_captions=2)
            names = sorted(os.listdir(out))
            self.assertEqual(names[:2], ["00000000.png", "00000000.txt"])
            self.assertEqual(len(names), 8)
            with open(os.path.join(out, "00000002.txt")) as f:
                self.assertEqual(f.readline().strip(), g.caption(2))
            data = dalle.ImageData.folder(out, image_size=16, strict=1)
            self.assertEqual(len(data), 4)
            self.assertEqual(data.captions(1)[0], g.caption(1))


class Errors(unittest.TestCase):
    def test_library_errors_name_the_argument(self):
        with self.assertRaises(dalle.DalleError) as e:
            dalle.Synth(colors=9)
        self.assertEqual(e.exception.status, dalle.Status.INVALID_ARGUMENT)
        self.assertIn("dalle_synth_params.colors = 9", str(e.exception))
        with self.assertRaises(dalle.DalleError) as e:
            dalle.synth_sample(0, 0, 8)
        self.assertIn("size", str(e.exception))
        _, pixels = dalle.synth_sample(0, 0, 16)
        with self.assertRaises(dalle.DalleError) as e:
            dalle.judge(pixels, "a purple")
        self.assertEqual(e.exception.status, dalle.Status.FORMAT)
        self.assertIn("names no object", str(e.exception))
        with self.assertRaises(dalle.DalleError) as e:
            dalle.read_scene(pixels, 3)
        self.assertIn("max_objects = 3", str(e.exception))

    def test_python_errors(self):
        with self.assertRaises(ValueError):
            dalle.Synth(split="test")
        with self.assertRaises(TypeError):
            dalle.judge([[[0.5] * 16] * 16] * 3, 5)
        with self.assertRaises(ValueError):
            dalle.judge([[[0.5] * 4] * 3] * 3, "a red circle")  # not square
        with self.assertRaises(ValueError):
            dalle.judge(b"\0" * 10, "a red circle")
        with self.assertRaises(TypeError):
            dalle.learn_bpe("a red circle")
        g = dalle.Synth()
        g.close()
        with self.assertRaises(dalle.DalleError):
            g.caption(0)


class Bpe(unittest.TestCase):
    def test_learn_and_load(self):
        caps = dalle.Synth(0).captions(200)
        m = dalle.learn_bpe(caps)
        self.assertGreater(m.count, 20)
        self.assertEqual(m.vocab_size, 512 + m.count + 2)
        self.assertTrue(m.text.startswith("#version"))
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "m.txt")
            m.save(path)
            with open(path, encoding="utf-8") as f:
                self.assertEqual(f.read(), m.text)
            with dalle.Tokenizer(path) as tok:
                self.assertEqual(tok.vocab_size, m.vocab_size)
                self.assertEqual(len(tok.encode("a red circle on a blue background")), 7)
            if os.path.exists(DALLE_EXE):  # what `dalle train-bpe` writes
                cli = os.path.join(d, "cli.txt")
                r = subprocess.run([DALLE_EXE, "train-bpe", "--synthetic", "200", "-o", cli],
                                   capture_output=True, text=True, timeout=60)
                self.assertEqual(r.returncode, 0, r.stderr)
                with open(cli, encoding="utf-8") as f:
                    self.assertEqual(f.read(), m.text)
        few = dalle.learn_bpe(caps, max_merges=3)
        self.assertEqual(few.count, 3)
        with self.assertRaises(dalle.DalleError) as e:
            dalle.learn_bpe(caps, min_count=0)
        self.assertIn("min_count = 0", str(e.exception))
        with self.assertRaises(dalle.DalleError):
            dalle.learn_bpe([])


if __name__ == "__main__":
    unittest.main()
