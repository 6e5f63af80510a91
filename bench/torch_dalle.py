"""PyTorch on the same GPU: the reference for bench_gpu (issue 9).

    python3 bench/torch_dalle.py [--models S,XS] [--batches 1,8,64] [--tokens 32]
                                 [--repeat 3] [--dtype float32|bfloat16]

DALLE-pytorch is not installed on the GPU machines (and nothing can be
fetched there), so this is the same network written in plain PyTorch, the
way its cached generation runs it: bench/make_model.c's workloads (rotary,
token shift, full attention, GEGLU feed-forward, LayerScale, to_logits over
the whole vocabulary), random weights, a KV cache and a token-shift ring,
one image token per sequence per step, the text logits masked, top-k (half
the image vocabulary) and Gumbel sampling on the GPU. Float32 with TF32 off
by default, as libdalle's CUDA backend; eager mode (what a user of the
upstream code runs).

Method: the cache is filled up to the middle of the image (the values do not
change the work), then `tokens` steps are timed with CUDA events after two
warm-up steps: time per step = elapsed / tokens (the GPU runs ahead of the
host; one synchronisation at the end), best of `repeat`. Tokens/s = batch /
time per step, comparable with bench_gpu's table (which takes the median
step of a window centred on the same position).
"""
import argparse
import math
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # the development machine: no PyTorch, by design
    sys.exit("torch_dalle.py needs PyTorch (it runs on the GPU machine only)")

# bench/make_model.c's WORKLOADS
WORKLOADS = {
    "S": dict(dim=512, depth=8, heads=8, dim_head=64, text_seq_len=64, num_text_tokens=49408,
              fmap=32, num_image_tokens=8192),
    "XS": dict(dim=256, depth=4, heads=8, dim_head=32, text_seq_len=32, num_text_tokens=49408,
               fmap=16, num_image_tokens=1024),
}


class Model:
    def __init__(self, w, batch, dtype, dev):
        g = torch.Generator(device="cpu").manual_seed(1234)
        D, L, H, dh = w["dim"], w["depth"], w["heads"], w["dim_head"]
        self.w, self.B, self.dev, self.dtype = w, batch, dev, dtype
        self.inner = H * dh
        self.text_len = w["text_seq_len"] + 1
        self.S = w["fmap"] ** 2
        self.P = self.text_len + self.S
        self.vocab_text = w["num_text_tokens"] + w["text_seq_len"]  # DALLE-pytorch's padding ids
        self.total_tokens = self.vocab_text + w["num_image_tokens"]

        def lin(o, i, bias=True):
            wt = (torch.randn(o, i, generator=g) / math.sqrt(i)).to(dev, dtype)
            b = (torch.randn(o, generator=g) * 0.02).to(dev, dtype) if bias else None
            return wt, b

        self.layers = []
        for _ in range(L):
            self.layers.append(dict(
                ln1=(torch.ones(D, device=dev, dtype=dtype), torch.zeros(D, device=dev, dtype=dtype)),
                qkv=lin(3 * self.inner, D, bias=False),
                out=lin(D, self.inner),
                ls1=torch.full((D,), 0.1, device=dev, dtype=dtype),
                ln2=(torch.ones(D, device=dev, dtype=dtype), torch.zeros(D, device=dev, dtype=dtype)),
                ff1=lin(2 * 4 * D, D),
                ff2=lin(D, 4 * D),
                ls2=torch.full((D,), 0.1, device=dev, dtype=dtype),
            ))
        self.ln_f = (torch.ones(D, device=dev, dtype=dtype), torch.zeros(D, device=dev, dtype=dtype))
        self.to_logits = lin(self.total_tokens, D)
        self.image_emb = torch.randn(w["num_image_tokens"], D, generator=g).to(dev, dtype)
        # rotary on the first third of each head's channels (q, k and v, as upstream)
        self.rot = (dh // 3) // 2 * 2
        pos = torch.arange(self.P, dtype=torch.float32)
        freqs = 1.0 / (10000 ** (torch.arange(0, self.rot, 2, dtype=torch.float32) / max(self.rot, 1)))
        ang = torch.outer(pos, freqs).repeat_interleave(2, dim=-1)
        self.cos, self.sin = ang.cos().to(dev, dtype), ang.sin().to(dev, dtype)
        # caches: K/V [L][B][H][P][dh]; token-shift rings of the normed inputs [L][2][B][fmap+1][D]
        self.k = torch.zeros(L, batch, H, self.P, dh, device=dev, dtype=dtype)
        self.v = torch.zeros_like(self.k)
        self.R = w["fmap"] + 1
        self.ring = torch.zeros(L, 2, batch, self.R, D, device=dev, dtype=dtype)
        self.img_mask = torch.zeros(self.total_tokens, device=dev, dtype=torch.bool)
        self.img_mask[: self.vocab_text] = True

    def rotary(self, x, p):  # x [B, H, 1, dh] at position p
        r = self.rot
        if r == 0:
            return x
        xr, rest = x[..., :r], x[..., r:]
        x1, x2 = xr[..., 0::2], xr[..., 1::2]
        rot_half = torch.stack((-x2, x1), dim=-1).flatten(-2)
        return torch.cat((xr * self.cos[p] + rot_half * self.sin[p], rest), dim=-1)

    def shift(self, h, l, which, p):
        """PreShiftToken of an image token at position p: a quarter of the
        channels from the token above, a quarter from the token to the left."""
        D = h.shape[-1]
        q = (D + 3) // 4
        left = min(q, D - q)
        img = p - self.text_len
        r, c = divmod(img, self.w["fmap"])
        ring = self.ring[l, which]
        above = ring[:, (p - self.w["fmap"]) % self.R] if r > 0 else torch.zeros_like(h)
        prev = ring[:, (p - 1) % self.R] if c > 0 else torch.zeros_like(h)
        ring[:, p % self.R] = h
        return torch.cat((above[:, :q], prev[:, q:q + left], h[:, q + left:]), dim=-1)

    def step(self, ids, p, gen):
        """One image token per sequence at position p; returns the sampled ids."""
        H, dh = self.w["heads"], self.w["dim_head"]
        x = self.image_emb[ids]  # [B, D]
        for l, L in enumerate(self.layers):
            h = F.layer_norm(x, x.shape[-1:], *L["ln1"])
            h = self.shift(h, l, 0, p)
            qkv = F.linear(h, L["qkv"][0])
            q, k, v = (t.view(self.B, H, 1, dh) for t in qkv.chunk(3, dim=-1))
            q, k, v = self.rotary(q, p), self.rotary(k, p), self.rotary(v, p)
            self.k[l, :, :, p] = k[:, :, 0]
            self.v[l, :, :, p] = v[:, :, 0]
            a = F.scaled_dot_product_attention(q, self.k[l, :, :, : p + 1], self.v[l, :, :, : p + 1])
            a = F.linear(a.reshape(self.B, self.inner), *L["out"])
            x = x + a * L["ls1"]
            h = F.layer_norm(x, x.shape[-1:], *L["ln2"])
            h = self.shift(h, l, 1, p)
            u, gate = F.linear(h, *L["ff1"]).chunk(2, dim=-1)
            h = F.linear(u * F.gelu(gate), *L["ff2"])
            x = x + h * L["ls2"]
        x = F.layer_norm(x, x.shape[-1:], *self.ln_f)
        logits = F.linear(x, *self.to_logits).float()
        logits = logits.masked_fill(self.img_mask, -torch.finfo(torch.float32).max)
        k = self.w["num_image_tokens"] // 2
        val, idx = logits.topk(k, dim=-1)
        u = torch.rand(val.shape, device=self.dev, generator=gen).clamp_(1e-20, 1.0)
        pick = (val - torch.log(-torch.log(u))).argmax(dim=-1)
        return idx.gather(-1, pick[:, None])[:, 0] - self.vocab_text


def bench(name, batch, tokens, repeat, dtype, dev):
    w = WORKLOADS[name]
    m = Model(w, batch, dtype, dev)
    gen = torch.Generator(device=dev).manual_seed(1)
    ids = torch.randint(0, w["num_image_tokens"], (batch,), device=dev)
    mid = m.text_len + m.S // 2 - tokens // 2
    best = float("inf")
    with torch.inference_mode():
        for _ in range(repeat):
            p = mid - 2
            for _ in range(2):  # warm-up
                ids = m.step(ids, p, gen)
                p += 1
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(tokens):
                ids = m.step(ids, p, gen)
                p += 1
            end.record()
            end.synchronize()
            best = min(best, start.elapsed_time(end) / 1e3 / tokens)
    del m
    torch.cuda.empty_cache()
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="S,XS")
    ap.add_argument("--batches", default="1,8,64")
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    a = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("torch_dalle.py: no CUDA device")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda")
    dtype = getattr(torch, a.dtype)
    print(f"# torch_dalle.py: PyTorch {torch.__version__} on {torch.cuda.get_device_name(0)}, "
          f"{a.dtype}, TF32 off, eager, {a.tokens} steps centred on the image's middle, "
          f"best of {a.repeat}")
    print(f"{'workload':10} {'batch':>5} {'tokens/s':>11} {'ms/step':>9}")
    for name in a.models.split(","):
        for b in (int(x) for x in a.batches.split(",")):
            t0 = time.perf_counter()
            step = bench(name, b, a.tokens, a.repeat, dtype, dev)
            print(f"DALLE-{name:4} {b:>5} {b / step:>11.1f} {step * 1e3:>9.3f}"
                  f"   ({time.perf_counter() - t0:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
