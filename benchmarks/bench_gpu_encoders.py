"""Neural tile encoders through ``extract`` on a GPU: does the reader keep the GPU busy?

Two encoders, with weights this script saves itself and loads through the
``weights=`` path as a user with downloaded weights would:

* ``resnet50-trunc``: random weights saved as safetensors;
* ``phikon-v2``: a ViT-L/16-sized ``transformers`` model (hidden size 1024, 24 layers,
  16 heads, 16-px patches, about 300 M parameters), random weights and ``config.json``
  written with ``save_pretrained``.

For each, in one process and on one synthetic 40x SVS: (e) the encoder alone on
20x tiles already in memory, and (x) ``lnmkit.features.extract`` end to end (tissue
segmentation, the reader thread decoding tiles on the CPU, encoding on the
device, bag writing). It prints tiles per second of both and their ratio: near 1
the reader feeds the GPU, well below 1 the GPU waits for the reader.

Without CUDA it prints that it skipped and exits 0, unless ``--device cpu`` is
given (a check of the script itself; use a small ``--size``).

Usage: ``python benchmarks/bench_gpu_encoders.py [--device cuda] [--size 16384]
[--precision bf16] [--batch-size 256] [--repeat 2]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lnmkit.features import extract, get_encoder
from lnmkit.synth import make_tissue_image, write_slide
from lnmkit.tiles import read_tiles, tile_grid


def _resnet_weights(folder):
    import torch
    from safetensors.torch import save_file

    from lnmkit.features.encoders._resnet import build_resnet50_trunk

    torch.manual_seed(0)
    trunk = build_resnet50_trunk()
    path = Path(folder) / "resnet50.safetensors"
    save_file({k: v.contiguous() for k, v in trunk.state_dict().items()}, str(path))
    return path


def _vit_large_weights(folder):
    import torch
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    config = ViTConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                       image_size=224, patch_size=16)
    out = Path(folder) / "phikon-v2"
    ViTModel(config).save_pretrained(out, safe_serialization=True)
    return out / "model.safetensors"


ENCODERS = {"resnet50-trunc": _resnet_weights, "phikon-v2": _vit_large_weights}


def _sync(device):
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _best(function, repeat, device):
    best = None
    for _ in range(repeat):
        _sync(device)
        start = time.perf_counter()
        count = function()
        _sync(device)
        seconds = time.perf_counter() - start
        best = seconds if best is None else min(best, seconds)
    return count, best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="cuda, cpu, or auto (cuda when available, else skip)")
    parser.add_argument("--size", type=int, default=16384, help="level-0 width of the 40x slide (px)")
    parser.add_argument("--precision", default="bf16", choices=["fp32", "fp16", "bf16"])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--encoders", default=",".join(ENCODERS))
    args = parser.parse_args()

    import torch

    device = args.device
    if device == "auto":
        if not torch.cuda.is_available():
            print("no CUDA device: GPU encoder benchmark skipped (pass --device cpu to check the script)")
            return
        device = "cuda"
    precision = args.precision if device == "cuda" else "fp32"
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "CPU"

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rgb, _ = make_tissue_image(args.size, 7, mpp=0.25)
        slide_path = tmp / "slide.svs"
        write_slide(slide_path, rgb, mpp=0.25, layout="svs")
        del rgb
        cohort = pd.DataFrame({"patient_id": ["B001"], "path": [str(slide_path)]},
                              index=pd.Index(["B001-A"], name="slide_id"))
        from lnmkit.slides import open_slide, segment_tissue

        with open_slide(slide_path) as slide:
            grid = tile_grid(slide, segment_tissue(slide), mpp=0.5, tile_size=224, min_tissue=0.5)
            tiles = np.concatenate([batch for _, batch in read_tiles(slide, grid)])
        print(f"device: {gpu}, precision {precision}, batch {args.batch_size}; slide {args.size} px at 40x, "
              f"{len(tiles)} tissue tiles of 224 px at 20x")
        print(f"{'encoder':<16}{'encoder alone, tiles/s':>24}{'extract end to end, tiles/s':>30}{'ratio':>8}")
        for name in args.encoders.split(","):
            weights = ENCODERS[name](tmp)
            kwargs = {"weights": str(weights), "device": device, "precision": precision,
                      "batch_size": args.batch_size}
            encoder = get_encoder(name, **kwargs)
            encoder.encode(tiles[: args.batch_size])  # moves the module to the device, warms kernels
            n, alone = _best(lambda: len(encoder.encode(tiles)), args.repeat, device)
            runs = iter(range(args.repeat))

            def end_to_end():
                fs = extract(cohort, tmp / f"features_{name}_{next(runs)}", encoder=encoder,
                             batch_size=args.batch_size, progress=False)
                return int(fs.manifest["n_tiles"].sum())

            m, whole = _best(end_to_end, args.repeat, device)
            print(f"{name:<16}{n / alone:>24.0f}{m / whole:>30.0f}{(m / whole) / (n / alone):>8.2f}")


if __name__ == "__main__":
    main()
