#!/usr/bin/env python3
"""Generate images for a caption with libdalle from Python, ranked by CLIP.

    PYTHONPATH=bindings/python python3 examples/generate.py model.dalle "a red circle" \
        --clip clip.dalle -n 8 -o out

Standard library only; with Pillow installed the images are also PIL images.
"""
import argparse

import dalle


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("caption")
    ap.add_argument("--clip", help="a CLIP bundle to rank the images with")
    ap.add_argument("-n", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--output", default="generated", help="file name prefix")
    args = ap.parse_args()

    with dalle.Dalle(args.model) as model:
        clip = dalle.Clip(args.clip) if args.clip else None
        try:
            images = dalle.generate(model, args.caption, n=args.n, clip=clip, seed=args.seed)
        finally:
            if clip:
                clip.close()
    for rank, image in enumerate(images):
        path = f"{args.output}-{rank}.png"
        image.save(path)
        score = "" if image.score is None else f"  score {image.score:.4f}"
        print(f"{path}{score}")


if __name__ == "__main__":
    main()
