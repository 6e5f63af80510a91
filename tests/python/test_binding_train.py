"""The Python binding of the training API (bindings/python/dalle/train.py
over include/dalle/train.h): the structs match the header (their C
defaults come back field for field), data sets, the three trainers' steps,
checkpoints that dalle.Vae / dalle.Dalle / dalle.Clip load, a resumed run
that continues bit for bit, and errors. Tiny models on the synthetic
world, a few seconds in all.

    DALLE_BUILD_DIR=build PYTHONPATH=bindings/python \\
        python3 -m unittest -v test_binding_train      # in tests/python
"""

import os
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
if os.path.join(REPO, "bindings", "python") not in sys.path:
    sys.path.insert(0, os.path.join(REPO, "bindings", "python"))

import dalle  # noqa: E402
from dalle import _arrays  # noqa: E402

WORLD = dict(world_colors=3, world_shapes=2, world_max_objects=1, world_layouts=0)
VAE = dict(image_size=16, num_tokens=32, codebook_dim=16, num_layers=2, num_resnet_blocks=0,
           hidden_dim=8, batch=4, lr=3e-3, n_threads=1)


def tolist(x):
    return x.tolist() if hasattr(x, "tolist") else x


class Train(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.dir = cls.tmp.name
        cls.images = dalle.ImageData.synthetic(48, image_size=16, **WORLD)
        with dalle.VaeTrainer(**VAE) as v:
            for _ in range(3):
                v.step_data(cls.images)
            cls.vae = os.path.join(cls.dir, "vae.dalle")
            v.save(cls.vae)
        captions = [c for i in range(len(cls.images)) for c in cls.images.captions(i)]
        cls.merges = os.path.join(cls.dir, "bpe.txt")
        dalle.learn_bpe(captions).save(cls.merges)

    @classmethod
    def tearDownClass(cls):
        cls.images.close()
        cls.tmp.cleanup()

    def test_defaults_are_the_headers(self):
        # the last field of each struct has its documented default: the
        # ctypes layouts are the header's
        t = dalle.Trainer.defaults()
        self.assertEqual((t["dim"], t["depth"], t["text_seq_len"], t["lr_schedule"]),
                         (512, 2, 256, "constant"))
        self.assertEqual((t["plateau_cooldown"], t["beta2"], t["clip_grad_norm"]),
                         (10, 0.999, 0.5))
        v = dalle.VaeTrainer.defaults()
        self.assertEqual((v["image_size"], v["num_tokens"], v["anneal_every"], v["lr_decay"],
                          v["steps_per_epoch"], v["clip_grad_norm"]),
                         (128, 8192, 100, 0.98, 0, 0.0))
        c = dalle.ClipTrainer.defaults()
        self.assertEqual((c["visual_patch_size"], c["batch"], c["plateau_factor"],
                          c["clip_grad_norm"]), (32, 8, 0.5, 0.5))
        self.assertEqual(dalle.TokenData.defaults()["world_colors"], 8)
        self.assertEqual(dalle.ImageData.defaults()["image_size"], 128)

    def test_image_data(self):
        d = self.images
        self.assertEqual((len(d), d.image_size, d.skipped), (48, 16, 0))
        px, caps, idx = d.batch(7, 3, 4)
        self.assertEqual(_arrays.shape_of(px), (4, 3, 16, 16))
        self.assertEqual([d.captions(i)[0] for i in idx], caps)
        self.assertEqual(tolist(d.batch(7, 3, 4)[0]), tolist(px))  # a pure function
        with self.assertRaises(dalle.DalleError):
            d.batch(0, 0, 49)

    def test_vae_trainer(self):
        with dalle.VaeTrainer(**VAE) as v:
            stats = v.step_data(self.images)
            self.assertEqual(stats["step"], 1)
            self.assertTrue({"loss", "recon", "kl", "temperature", "lr"} <= set(stats))
            px, _, _ = self.images.batch(1, 0, 2)
            self.assertEqual(v.step(px)["step"], 2)
            self.assertEqual(v.steps, 2)
            ids = v.encode(px)
            self.assertEqual(_arrays.shape_of(ids), (2, 16))
            self.assertEqual(_arrays.shape_of(v.decode(ids)), (2, 3, 16, 16))
            path = os.path.join(self.dir, "v.dalle")
            v.save(path)
            with dalle.Vae(path) as saved:
                self.assertEqual(tolist(saved.encode(px)), tolist(ids))
            with self.assertRaises(ValueError):
                v.step([[[[0.5] * 8] * 8] * 3])  # 8 px, the model is 16

    def test_resume_continues_bit_for_bit(self):
        ckpt = os.path.join(self.dir, "vae.ckpt")
        with dalle.VaeTrainer(**VAE) as a:
            for _ in range(2):
                a.step_data(self.images)
            a.save(ckpt, with_optimizer=True)
            want = [a.step_data(self.images)["loss"] for _ in range(2)]
        with dalle.VaeTrainer.resume(ckpt, n_threads=2) as b:
            self.assertEqual(b.steps, 2)
            self.assertEqual([b.step_data(self.images)["loss"] for _ in range(2)], want)

    def test_dalle_trainer(self):
        data = dalle.TokenData.synthetic(self.vae, 16, tokenizer=self.merges, text_seq_len=8,
                                         **WORLD)
        self.assertEqual((len(data), data.text_seq_len, data.image_seq_len), (16, 8, 16))
        self.assertGreater(data.max_text_id, 0)
        text, image = data.batch(0, 0, 2)
        self.assertEqual(_arrays.shape_of(text), (2, 8))
        with dalle.Trainer(self.vae, tokenizer=self.merges, dim=16, depth=1, heads=2,
                           dim_head=16, text_seq_len=8, batch=4, n_threads=1,
                           attn_types="full", lr_schedule="cosine", total_steps=10) as t:
            self.assertEqual(t.params["attn_types"], "full")
            self.assertEqual(t.params["lr_schedule"], "cosine")
            first = t.step_data(data)
            self.assertEqual((first["step"], first["tokens"]), (1, 4 * (8 + 16)))
            s = t.step(text, image)
            self.assertEqual(s["step"], 2)
            logits = t.logits()
            self.assertEqual(_arrays.shape_of(logits)[:2], (2, 8 + 16))
            e = t.eval(text, image)
            self.assertEqual(e["step"], 2)
            self.assertGreater(t.lr, 0)
            path = os.path.join(self.dir, "model.dalle")
            t.save(path)
            with dalle.Dalle(path) as m:
                self.assertEqual(_arrays.shape_of(logits)[2], m.total_tokens)
            with self.assertRaises(ValueError):
                t.step(text, [[1, 2, 3]] * 2)  # image rows of the wrong length
            with self.assertRaises(TypeError):
                t.step_data(self.images)  # ImageData is not TokenData
        data.close()

    def test_clip_trainer(self):
        with dalle.ClipTrainer(self.merges, dim_text=16, dim_image=16, dim_latent=16,
                               text_enc_depth=1, visual_enc_depth=1, text_heads=2,
                               visual_heads=2, text_seq_len=8, visual_image_size=16,
                               visual_patch_size=4, batch=4, n_threads=1) as c:
            s = c.step_data(self.images)
            self.assertTrue({"loss", "accuracy", "scale"} <= set(s))
            px, _, _ = self.images.batch(0, 0, 3)
            text = [[1, 2, 3, 0, 0, 0, 0, 0]] * 3
            c.step(text, px, mask=[[1, 1, 1, 0, 0, 0, 0, 0]] * 3)
            c.eval(text, px)
            self.assertEqual(_arrays.shape_of(c.sim()), (3, 3))
            path = os.path.join(self.dir, "clip.dalle")
            c.save(path)
            with dalle.Clip(path) as saved:
                self.assertEqual(saved.image_size, 16)

    def test_errors(self):
        with self.assertRaises(TypeError) as e:
            dalle.VaeTrainer(bogus=1)
        self.assertIn("unknown parameter 'bogus'", str(e.exception))
        with self.assertRaises(ValueError):
            dalle.Trainer(self.vae, lr_schedule="sometimes")
        with self.assertRaises(TypeError):
            dalle.VaeTrainer(lr="fast")
        with self.assertRaises(dalle.DalleError) as e:
            dalle.VaeTrainer(image_size=24)
        self.assertIn("image_size", str(e.exception))
        with self.assertRaises(dalle.DalleError) as e:
            dalle.ImageData.synthetic(4, image_size=8)
        self.assertEqual(e.exception.status, dalle.Status.INVALID_ARGUMENT)
        with self.assertRaises(dalle.DalleError):
            dalle.Trainer.resume(os.path.join(self.dir, "missing.ckpt"))


if __name__ == "__main__":
    unittest.main()
