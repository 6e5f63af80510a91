#!/bin/sh
# Rebuild the shipped demo model (models/README.md, docs/demo-model.md) from
# nothing but the `dalle` command: learn the caption vocabulary, train the
# dVAE, the DALL-E transformer and the CLIP reranker on the built-in
# synthetic world (one large centred object: 8 colours, 4 shapes, 8
# backgrounds), then judge the result on 100 held-out captions. Every step
# is seeded, so the bundles come out the same bit for bit (any thread count).
# Usage: sh models/reproduce.sh [OUTDIR]   (default build/demo-model)
set -eu
cd "$(dirname "$0")/.."
dalle=${DALLE:-build/examples/dalle}
out=${1:-build/demo-model}
mkdir -p "$out"
W="--world-colors 8 --world-shapes 4 --world-objects 1 --world-layouts 0"

$dalle train-bpe --synthetic 20000 $W -o "$out/demo-merges.txt"

$dalle train-vae --synthetic 4000 $W --image-size 32 --num-layers 2 --num-tokens 128 \
    --codebook-dim 64 --hidden-dim 64 --num-resnet-blocks 1 --steps 1500 --batch 16 \
    --anneal-rate 1e-4 --seed 0 --save-every 0 --log-every 100 -o "$out/demo-vae.dalle"

$dalle train-dalle --vae "$out/demo-vae.dalle" --bpe "$out/demo-merges.txt" --synthetic 20000 $W \
    --dim 128 --depth 2 --heads 4 --dim-head 32 --text-seq-len 16 --num-text-tokens auto \
    --batch 16 --lr 1e-3 --steps 4000 --seed 0 --save-every 500 --log-every 100 \
    -o "$out/demo.dalle"

$dalle train-clip --bpe "$out/demo-merges.txt" --synthetic 10000 $W \
    --dim 64 --depth 2 --heads 2 --image-size 32 --patch-size 4 --text-seq-len 16 \
    --num-text-tokens auto --batch 32 --lr 1e-3 --steps 1500 --seed 0 --save-every 500 \
    --log-every 100 -o "$out/demo-clip.dalle"

$dalle judge -m "$out/demo.dalle" --clip "$out/demo-clip.dalle" -n 100 -s 8 --seed 0 $W
