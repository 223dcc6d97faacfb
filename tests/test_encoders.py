"""Tile encoders: registry, stain-texture descriptor, ResNet-50 trunk, timm/hf-hub loaders."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pytest

from lnmkit.exceptions import IncompatibleWeightsError, MissingWeightsError
from lnmkit.features import PATHOLOGY_ENCODERS, get_encoder, list_encoders, pathology_encoders

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "openslide"


@pytest.fixture
def no_local_weights(monkeypatch, tmp_path):
    """No weights folder and an empty Hugging Face cache, whatever the machine has."""
    monkeypatch.delenv("LNMKIT_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    return tmp_path / "hf-cache"


def _hed_tile(h, e, seed=0):
    """RGB tile from hematoxylin/eosin concentration maps via skimage's inverse deconvolution."""
    from skimage.color import hed2rgb

    hed = np.stack([h, e, np.zeros_like(h)], axis=-1)
    return (np.clip(hed2rgb(hed), 0, 1) * 255).round().astype(np.uint8)


def _disks(shape, centres, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    mask = np.zeros(shape, bool)
    for cy, cx in centres:
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    return mask


# ----------------------------------------------------------------------------- registry

def test_list_encoders_names_the_builtins():
    names = list_encoders()
    assert {"stain-texture", "resnet50-trunc", "uni", "uni2-h", "virchow2", "conch"} <= set(names)
    assert names == sorted(names)


def test_unknown_encoder_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown encoder 'nope'.*'resnet50-trunc'.*'stain-texture'"):
        get_encoder("nope")
    with pytest.raises(TypeError, match="must be a string"):
        get_encoder(3)


def test_unknown_encoder_parameter_lists_valid_ones():
    with pytest.raises(TypeError, match=r"encoder 'stain-texture' has no parameter\(s\) \['mmp'\]; "
                                        r"its parameters are \['batch_size', 'mpp'\]"):
        get_encoder("stain-texture", mmp=0.5)


def test_get_encoder_returns_instances_unchanged():
    enc = get_encoder("stain-texture")
    assert get_encoder(enc) is enc


# ------------------------------------------------------------------------ stain-texture

def test_stain_texture_shape_names_and_determinism():
    enc = get_encoder("stain-texture")
    rng = np.random.default_rng(0)
    tiles = rng.integers(0, 256, (5, 224, 224, 3), dtype=np.uint8)
    a, b = enc.encode(tiles), enc.encode(tiles.copy())
    assert 64 <= enc.dim <= 128
    assert a.shape == (5, enc.dim) and a.dtype == np.float32
    assert len(enc.feature_names) == enc.dim == len(set(enc.feature_names))
    assert np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert enc.encode(tiles[:0]).shape == (0, enc.dim)


def test_stain_texture_batch_invariance():
    """Vectorised batch code must give each tile the features it gets alone."""
    enc = get_encoder("stain-texture", batch_size=3)
    h = np.zeros((128, 128))
    tiles = []
    for seed in range(4):
        rng = np.random.default_rng(seed)
        centres = rng.integers(10, 118, (5 + 4 * seed, 2))
        nuclei = _disks(h.shape, centres, 5)
        tiles.append(_hed_tile(np.where(nuclei, 0.09, 0.01), np.full(h.shape, 0.03 + 0.01 * seed)))
    tiles = np.stack(tiles)
    together = enc.encode(tiles)
    alone = np.concatenate([enc.encode(t[None]) for t in tiles])
    # float32 sums are blocked differently for different batch shapes.
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-5)


def test_stain_texture_counts_planted_nuclei():
    enc = get_encoder("stain-texture", mpp=0.5)
    names = enc.feature_names
    centres = [(30, 30), (30, 150), (110, 90), (180, 40), (190, 190)]
    nuclei = _disks((224, 224), centres, 6)
    # 0.1 in skimage units is ~0.6 OD: well above the nuclear cut-off; eosin fills the rest.
    tile = _hed_tile(np.where(nuclei, 0.1, 0.0), np.where(nuclei, 0.0, 0.04))
    f = dict(zip(names, enc.encode(tile[None])[0]))
    area_um2 = nuclei.sum() / len(centres) * 0.25
    assert f["background_fraction"] == pytest.approx(0.0, abs=1e-6)
    assert f["nuclei_per_10k_um2"] == pytest.approx(5 / (224 * 224 * 0.25) * 1e4, rel=1e-6)
    assert f["nuclear_area_mean_um2"] == pytest.approx(area_um2, rel=1e-6)
    assert f["nuclear_area_p50_um2"] == pytest.approx(area_um2, rel=1e-6)
    assert f["nuclear_fraction_h035"] == pytest.approx(nuclei.mean(), abs=0.002)


def test_stain_texture_blank_tile_is_background():
    enc = get_encoder("stain-texture")
    f = dict(zip(enc.feature_names, enc.encode(np.full((1, 224, 224, 3), 245, np.uint8))[0]))
    assert f["background_fraction"] == 1.0
    others = [v for k, v in f.items() if k != "background_fraction"]
    assert np.allclose(others, 0.0)


def test_stain_texture_hematoxylin_vs_eosin_rich():
    """H-rich tiles: more H, less E, more nuclear area than E-rich tiles (skimage inverse deconvolution)."""
    enc = get_encoder("stain-texture")
    names = enc.feature_names
    rng = np.random.default_rng(1)
    shape = (224, 224)
    dense = _disks(shape, rng.integers(5, 219, (120, 2)), 5)
    sparse = _disks(shape, rng.integers(5, 219, (8, 2)), 5)
    h_rich = _hed_tile(np.where(dense, 0.12, 0.03), np.full(shape, 0.01))
    e_rich = _hed_tile(np.where(sparse, 0.12, 0.005), np.full(shape, 0.08))
    fh, fe = (dict(zip(names, v)) for v in enc.encode(np.stack([h_rich, e_rich])))
    assert fh["h_mean"] > fe["h_mean"] + 0.1
    assert fe["e_mean"] > fh["e_mean"] + 0.2
    assert fh["h_fraction_of_stain"] > 0.6 > 0.4 > fe["h_fraction_of_stain"]
    assert fh["nuclear_fraction_h035"] > 3 * fe["nuclear_fraction_h035"]
    assert fh["nuclei_per_10k_um2"] > fe["nuclei_per_10k_um2"]
    assert fh["h_p90"] > fe["h_p90"]


def test_stain_texture_percentiles_match_numpy():
    enc = get_encoder("stain-texture")
    rng = np.random.default_rng(3)
    h = rng.uniform(0.0, 0.15, (224, 224))
    tile = _hed_tile(h, np.full(h.shape, 0.05))
    f = dict(zip(enc.feature_names, enc.encode(tile[None])[0]))
    # Our own deconvolution of the tile: skimage's rgb2hed is the same matrix in ln/13.8 units.
    from skimage.color import rgb2hed

    h_od = rgb2hed(tile)[..., 0] * np.log(1e6) / np.log(10)
    # Histogram bins are 0.01 OD wide and the percentiles use every second pixel.
    for q in (10, 50, 90):
        assert f[f"h_p{q}"] == pytest.approx(np.percentile(h_od, q), abs=0.015)
    assert f["h_mean"] == pytest.approx(h_od.mean(), abs=0.01)


def test_stain_texture_rejects_bad_input():
    enc = get_encoder("stain-texture")
    with pytest.raises(TypeError, match="uint8"):
        enc.encode(np.zeros((1, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(B, H, W, 3\)"):
        enc.encode(np.zeros((32, 32, 3), np.uint8))


# --------------------------------------------------------------------------- resnet50

@pytest.fixture(scope="module")
def random_resnet():
    enc = get_encoder("resnet50-trunc", pretrained=False, batch_size=2)
    # The trunk is fully convolutional; 64 px inputs keep these tests fast on CPU.
    enc.input_size = 64
    return enc


@pytest.fixture(scope="module")
def tiles4():
    return np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)


def test_resnet_random_init_shape_and_determinism(random_resnet, tiles4):
    out = random_resnet.encode(tiles4)
    assert out.shape == (2, 1024) and out.dtype == np.float32
    again = get_encoder("resnet50-trunc", pretrained=False)
    again.input_size = 64
    np.testing.assert_allclose(out, again.encode(tiles4), rtol=1e-5, atol=1e-6)
    assert get_encoder("resnet50-trunc", pretrained=False).input_size == 224


def test_resnet_state_dict_keys_match_torchvision_layout(random_resnet):
    keys = set(random_resnet.module.state_dict())
    assert {"conv1.weight", "bn1.running_mean", "layer1.0.downsample.0.weight",
            "layer1.0.downsample.1.weight", "layer3.5.conv3.weight", "layer3.5.bn3.bias"} <= keys
    assert not any(k.startswith(("layer4", "fc")) for k in keys)
    # torchvision resnet50: 25,557,032 parameters, of which layer4 has 14,964,736 and fc 2,049,000.
    n_params = sum(p.numel() for p in random_resnet.module.parameters())
    assert n_params == 25_557_032 - 14_964_736 - 2_049_000


def _full_resnet_state(trunk, seed=1):
    """A state dict shaped like torchvision's resnet50: trunk keys + layer4 + fc, new values."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    state = {k: (torch.rand(v.shape, generator=gen) * 0.1 + (1.0 if "running_var" in k else 0.0))
             if v.is_floating_point() else v.clone() for k, v in trunk.state_dict().items()}
    state["layer4.0.conv1.weight"] = torch.zeros(512, 1024, 1, 1)
    state["fc.weight"] = torch.zeros(1000, 2048)
    state["fc.bias"] = torch.zeros(1000)
    return state


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
def test_resnet_loads_saved_weights(random_resnet, tiles4, tmp_path, fmt, no_local_weights):
    import torch
    from safetensors.torch import save_file

    state = _full_resnet_state(random_resnet.module)
    path = tmp_path / f"resnet50.{fmt}"
    if fmt == "safetensors":
        save_file(state, str(path))
    else:
        # Old torchvision checkpoints carry no num_batches_tracked buffers.
        torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, path)
    loaded = get_encoder("resnet50-trunc", weights=path)
    own = loaded.module.state_dict()
    for key, value in state.items():
        if key.startswith(("layer4", "fc")):
            assert key not in own
        elif fmt == "safetensors" or not key.endswith("num_batches_tracked"):
            torch.testing.assert_close(own[key], value, rtol=0, atol=0)
    assert loaded.config()["weights"].startswith(path.name)
    if fmt == "safetensors":
        loaded.input_size = 64
        out = loaded.encode(tiles4)
        assert out.shape == (2, 1024) and np.isfinite(out).all()
        assert not np.allclose(out, random_resnet.encode(tiles4), atol=1e-3)


def test_resnet_weights_from_env_dir(random_resnet, tmp_path, monkeypatch, no_local_weights):
    from safetensors.torch import save_file

    save_file(_full_resnet_state(random_resnet.module), str(tmp_path / "resnet50.safetensors"))
    monkeypatch.setenv("LNMKIT_WEIGHTS_DIR", str(tmp_path))
    assert get_encoder("resnet50-trunc").weights_path_ == tmp_path / "resnet50.safetensors"


def test_resnet_weights_from_hf_cache_layout(random_resnet, no_local_weights):
    from safetensors.torch import save_file

    snapshot = no_local_weights / "models--timm--resnet50.tv_in1k" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (no_local_weights / "models--timm--resnet50.tv_in1k" / "refs").mkdir()
    (no_local_weights / "models--timm--resnet50.tv_in1k" / "refs" / "main").write_text("abc123")
    save_file(_full_resnet_state(random_resnet.module), str(snapshot / "model.safetensors"))
    assert get_encoder("resnet50-trunc").weights_path_.samefile(snapshot / "model.safetensors")


def test_resnet_wrong_keys_raise_clear_error(random_resnet, tmp_path, no_local_weights):
    from safetensors.torch import save_file

    state = _full_resnet_state(random_resnet.module)
    state["layer2.0.conv1.weight_renamed"] = state.pop("layer2.0.conv1.weight")
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(IncompatibleWeightsError,
                       match=r"bad\.safetensors.*missing keys: layer2\.0\.conv1\.weight.*"
                             r"unexpected keys: layer2\.0\.conv1\.weight_renamed"):
        get_encoder("resnet50-trunc", weights=tmp_path / "bad.safetensors")
    state = _full_resnet_state(random_resnet.module)
    state["conv1.weight"] = state["conv1.weight"][:32]
    save_file(state, str(tmp_path / "shape.safetensors"))
    with pytest.raises(IncompatibleWeightsError, match=r"shape mismatches: conv1\.weight"):
        get_encoder("resnet50-trunc", weights=tmp_path / "shape.safetensors")


def test_resnet_refuses_pickled_objects(tmp_path, no_local_weights):
    import torch

    torch.save({"when": datetime.datetime(2020, 1, 1)}, tmp_path / "pickle.pth")
    with pytest.raises(IncompatibleWeightsError, match="weights_only"):
        get_encoder("resnet50-trunc", weights=tmp_path / "pickle.pth")


def test_resnet_missing_weights_say_where_to_put_them(no_local_weights):
    with pytest.raises(MissingWeightsError, match=r"LNMKIT_WEIGHTS_DIR.*resnet50\.safetensors"):
        get_encoder("resnet50-trunc")
    with pytest.raises(MissingWeightsError, match="does not exist"):
        get_encoder("resnet50-trunc", weights="/nonexistent/resnet50.pth")


def test_torch_encoder_precision_checks(random_resnet, tiles4):
    enc = get_encoder("resnet50-trunc", pretrained=False, precision="fp16")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        enc.encode(tiles4)
    enc = get_encoder("resnet50-trunc", pretrained=False, precision="fp64")
    with pytest.raises(ValueError, match="precision must be one of"):
        enc.encode(tiles4)


# ----------------------------------------------------------------------- timm / hf-hub

def test_pathology_encoder_table():
    table = pathology_encoders()
    assert set(table.index) == set(PATHOLOGY_ENCODERS)
    assert table.loc["uni", "dim"] == 1024 and table.loc["uni", "repo_id"] == "MahmoodLab/UNI"
    assert table.loc["uni2-h", "dim"] == 1536
    virchow = PATHOLOGY_ENCODERS["virchow2"]
    assert virchow.output == "cls+mean" and virchow.dim == 2 * 1280 and virchow.prefix_tokens == 5
    assert PATHOLOGY_ENCODERS["conch"].input_size == 448
    assert PATHOLOGY_ENCODERS["h-optimus-0"].mean == (0.707223, 0.578729, 0.703617)
    for spec in PATHOLOGY_ENCODERS.values():
        assert spec.mpp == 0.5 and len(spec.mean) == len(spec.std) == 3
        assert spec.backend != "timm" or spec.timm_kwargs.get("num_classes") == 0


def test_hf_hub_missing_weights_name_repo_and_cache(no_local_weights):
    with pytest.raises(MissingWeightsError, match=r"hf-hub:MahmoodLab/UNI.*models--MahmoodLab--UNI"):
        get_encoder("hf-hub:MahmoodLab/UNI")
    with pytest.raises(MissingWeightsError, match="models--paige-ai--Virchow2"):
        get_encoder("virchow2")


def test_hf_hub_unknown_repo(no_local_weights):
    with pytest.raises(ValueError, match=r"unknown repository.*hf-hub:MahmoodLab/UNI"):
        get_encoder("hf-hub:someone/not-a-model")


def test_hf_hub_finds_cached_weights_then_needs_timm(no_local_weights):
    snapshot = no_local_weights / "models--MahmoodLab--UNI" / "snapshots" / "rev1"
    snapshot.mkdir(parents=True)
    (snapshot / "pytorch_model.bin").write_bytes(b"not a checkpoint")
    try:
        import timm  # noqa: F401
    except Exception:  # noqa: BLE001 - timm may be installed but broken (torchvision mismatch)
        with pytest.raises(ImportError, match="pip install"):
            get_encoder("uni")
    else:
        with pytest.raises(IncompatibleWeightsError, match="pytorch_model.bin"):
            get_encoder("uni")


def test_timm_encoder_loads_saved_weights(tmp_path):
    timm = pytest.importorskip("timm")
    import torch

    kwargs = {"img_size": 64, "patch_size": 16, "embed_dim": 32, "depth": 1, "num_heads": 2}
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, **kwargs)
    torch.save(model.state_dict(), tmp_path / "vit.pth")
    enc = get_encoder("timm:vit_tiny_patch16_224", weights=tmp_path / "vit.pth", timm_kwargs=kwargs,
                      input_size=64)
    tiles = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    out = enc.encode(tiles)
    assert out.shape == (2, 32)
    np.testing.assert_array_equal(out, enc.encode(tiles))


def test_docs_list_every_encoder_and_feature():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "features.md").read_text()
    for name in list_encoders():
        assert f"`{name}`" in doc or f"`{name}`," in doc, name
    block = doc.split("Column order of `feature_names`")[1].split("```text\n")[1].split("```")[0]
    listed = [n.strip() for n in block.replace("\n", ",").split(",") if n.strip()]
    assert listed == get_encoder("stain-texture").feature_names


def test_glcm_against_skimage():
    """Co-occurrence counts and statistics equal scikit-image's (0 and 90 degrees pooled, symmetric)."""
    from skimage.feature import graycomatrix, graycoprops

    from lnmkit.features.encoders._stain_texture import _glcm_properties
    from lnmkit.features.encoders._stain_texture_kernels import _glcm_counts

    rng = np.random.default_rng(0)
    q = rng.integers(0, 8, (2, 40, 40))
    q[1] = np.minimum(q[1] // 2 + np.arange(40)[None, :] // 10, 7)
    counts = np.zeros((2, 2, 64), dtype=np.int64)  # (tile, distance 1 and 2, pair)
    for i in range(2):
        _glcm_counts(q[i], np.ones((40, 40), bool), 8, counts[i])
    for distance in (1, 2):
        ours = np.array(_glcm_properties(counts[:, distance - 1]))
        for i in range(2):
            glcm = graycomatrix(q[i].astype(np.uint8), [distance], [0, np.pi / 2], levels=8,
                                symmetric=True).sum(axis=3, keepdims=True).astype(float)
            glcm /= glcm.sum()
            for row, prop in enumerate(("contrast", "homogeneity", "energy", "correlation")):
                assert ours[row, i] == pytest.approx(graycoprops(glcm, prop)[0, 0], rel=1e-9)
    # A pair counts only when both pixels are in the mask.
    mask = np.ones((40, 40), bool)
    mask[:, 20] = False
    masked = np.zeros((2, 64), dtype=np.int64)
    _glcm_counts(q[0], mask, 8, masked)
    full = graycomatrix(q[0].astype(np.uint8), [1], [0, np.pi / 2], levels=8).sum()
    assert masked[0].sum() == full - 2 * 40 - 39


class _FakeTimm:
    """Stands in for timm (not importable next to this torch) to test lnmkit's own plumbing."""

    class layers:
        SwiGLUPacked = object

    @staticmethod
    def create_model(name, pretrained=False, **kwargs):
        import torch
        from torch import nn

        class TinyViT(nn.Module):
            def __init__(self, embed_dim=8, reg_tokens=0, global_pool="token", **_):
                super().__init__()
                self.patch = nn.Conv2d(3, embed_dim, 16, stride=16)
                self.cls_token = nn.Parameter(torch.randn(1, 1, embed_dim))
                self.reg_token = nn.Parameter(torch.randn(1, reg_tokens, embed_dim))
                self.num_features, self.global_pool = embed_dim, global_pool

            def forward(self, x):
                tokens = self.patch(x).flatten(2).transpose(1, 2)        # (B, N, C)
                prefix = torch.cat([self.cls_token, self.reg_token], 1).expand(len(x), -1, -1)
                tokens = torch.cat([prefix, tokens], 1)                  # (B, 1 + R + N, C)
                return tokens if self.global_pool == "" else tokens[:, 0]

        assert not pretrained and kwargs["num_classes"] == 0
        return TinyViT(**kwargs)


def test_hf_hub_virchow2_pooling_with_stand_in_timm(monkeypatch, no_local_weights):
    import sys

    import torch
    from safetensors.torch import save_file

    monkeypatch.setitem(sys.modules, "timm", _FakeTimm)
    spec = PATHOLOGY_ENCODERS["virchow2"]
    model = _FakeTimm.create_model(spec.architecture, **{**spec.timm_kwargs, "num_classes": 0})
    snapshot = no_local_weights / "models--paige-ai--Virchow2" / "snapshots" / "rev"
    snapshot.mkdir(parents=True)
    save_file(model.state_dict(), str(snapshot / "model.safetensors"))
    tiles = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    enc = get_encoder("virchow2")
    assert enc.name == "hf-hub:paige-ai/Virchow2" and enc.dim == 16
    out = enc.encode(tiles)
    x = (torch.from_numpy(tiles).permute(0, 3, 1, 2).float() / 255 - torch.tensor(spec.mean).view(
        1, 3, 1, 1)) / torch.tensor(spec.std).view(1, 3, 1, 1)
    with torch.no_grad():
        tokens = model(x)
    expected = torch.cat([tokens[:, 0], tokens[:, 5:].mean(1)], -1).numpy()  # 1 class + 4 registers
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    cls_only = get_encoder("hf-hub:paige-ai/virchow2", return_cls=True)
    assert cls_only.dim == 8
    np.testing.assert_allclose(cls_only.encode(tiles), expected[:, :8], rtol=1e-4, atol=1e-5)
    # Parameters of another architecture: strict check names the file.
    save_file({"patch.weight": torch.zeros(1)}, str(snapshot / "model.safetensors"))
    with pytest.raises(IncompatibleWeightsError, match="model.safetensors"):
        get_encoder("virchow2")


def test_bf16_autocast_on_cpu_tracks_fp32(random_resnet, tiles4):
    enc = get_encoder("resnet50-trunc", pretrained=False, precision="bf16")
    enc.input_size = 64
    low, full = enc.encode(tiles4), random_resnet.encode(tiles4)
    assert low.dtype == np.float32 and low.shape == full.shape
    # bfloat16 keeps ~3 significant digits; the features must still agree closely overall.
    assert np.corrcoef(low.ravel(), full.ravel())[0, 1] > 0.99


# ------------------------------------------- stain-texture against its first (array) formulation

# Features may differ from the reference by float32 summation order only: the
# reference accumulates means and energies in float32, the kernel in float64.
REFERENCE_RTOL, REFERENCE_ATOL = 2e-4, 2e-5


def _reference_features(tiles, mpp=0.5):
    return np.concatenate([_ref_encode_batch(tiles[i:i + 64], mpp) for i in range(0, len(tiles), 64)])


def _assert_matches_reference(tiles, mpp=0.5, ref=None):
    enc = get_encoder("stain-texture", mpp=mpp)
    ours = enc.encode(tiles)
    ref = _reference_features(tiles, mpp) if ref is None else ref
    bad = ~np.isclose(ours, ref, rtol=REFERENCE_RTOL, atol=REFERENCE_ATOL)
    if bad.any():
        cols = sorted({enc.feature_names[j] for j in np.nonzero(bad)[1]})
        row, col = np.argwhere(bad)[0]
        raise AssertionError(f"{bad.sum()} values off the reference in {cols}; first: tile {row} "
                             f"{enc.feature_names[col]} = {ours[row, col]!r}, reference {ref[row, col]!r}")
    return ours, ref


@pytest.mark.parametrize("shape", [(6, 224, 224), (3, 57, 63), (2, 8, 8), (2, 5, 3), (1, 1, 1), (2, 2, 9)])
def test_stain_texture_matches_reference_on_random_tiles(shape):
    rng = np.random.default_rng(sum(shape))
    tiles = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    # Dark and blank tiles, and near-threshold greys (OD norm about 0.15) exercise the edges.
    tiles[0, : shape[1] // 2] = rng.integers(0, 30, (shape[1] // 2, shape[2], 3))
    if shape[0] > 1:
        tiles[1] = np.clip(rng.normal(202, 3, (shape[1], shape[2], 3)), 0, 255).astype(np.uint8)
    if shape[0] > 2:
        tiles[2] = (200, 120, 170)  # flat stain: standard deviations must come out 0
    _assert_matches_reference(tiles, mpp=0.5 if shape[1] > 8 else 0.263)


def test_stain_texture_matches_reference_on_hed_tiles():
    shape = (224, 224)
    tiles = []
    for seed in range(6):
        rng = np.random.default_rng(seed)
        nuclei = _disks(shape, rng.integers(5, 219, (20 + 30 * seed, 2)), 4 + seed)
        h = np.where(nuclei, rng.uniform(0.08, 0.14), 0.01) + rng.normal(0, 0.01, shape)
        e = np.clip(rng.uniform(0.0, 0.08) + rng.normal(0, 0.01, shape), 0, None)
        tiles.append(_hed_tile(np.clip(h, 0, None), e))
    ours, _ = _assert_matches_reference(np.stack(tiles), mpp=0.5)
    counts = ours[:, get_encoder("stain-texture").feature_names.index("nuclei_per_10k_um2")]
    assert (counts > 0).all() and len(np.unique(counts)) == len(counts)


def _cohort_tiles(cohort_dir, tile_size):
    """Every tissue tile of a synthetic cohort at 0.5 µm/px, with slide and patient per tile."""
    from lnmkit.cohort import Cohort
    from lnmkit.slides import open_slide, segment_tissue
    from lnmkit.tiles import read_tiles, tile_grid

    tiles, coords, slide_ids, grids = [], [], [], {}
    slides = Cohort.from_dir(cohort_dir).slides
    for slide_id, row in slides.iterrows():
        with open_slide(row["path"]) as slide:
            grid = tile_grid(slide, segment_tissue(slide), mpp=0.5, tile_size=tile_size)
            for batch_coords, batch in read_tiles(slide, grid):
                tiles.append(batch)
                coords.append(batch_coords)
                slide_ids += [slide_id] * len(batch)
        grids[slide_id] = grid
    patients = slides.loc[slide_ids, "patient_id"].to_numpy()
    return np.concatenate(tiles), np.concatenate(coords), np.array(slide_ids), patients, grids


@pytest.fixture(scope="module")
def cohort_tiles(synthetic_cohort_dir):
    """Tiles, coords, slide and patient ids, grids and reference features of the test cohort."""
    # 112-px tiles: the 2048-px test slides hold only a few dozen 224-px ones.
    tiles, coords, slide_ids, patients, grids = _cohort_tiles(synthetic_cohort_dir, tile_size=112)
    return tiles, coords, slide_ids, patients, grids, _reference_features(tiles)


def test_stain_texture_matches_reference_on_synthetic_cohort(cohort_tiles, synthetic_cohort_dir):
    tiles, ref = cohort_tiles[0], cohort_tiles[-1]
    assert len(tiles) >= 100
    _assert_matches_reference(tiles, ref=ref)
    large = _cohort_tiles(synthetic_cohort_dir, tile_size=224)[0]
    assert len(large) >= 20
    _assert_matches_reference(large)


@pytest.mark.parametrize("name, kwargs, tile_size", [("boxes.tiff", {"mpp": 0.25}, 32),
                                                     ("small.svs", {}, 8)])
def test_stain_texture_matches_reference_on_openslide_fixtures(name, kwargs, tile_size):
    from lnmkit.slides import open_slide
    from lnmkit.tiles import read_tiles, tile_grid

    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"OpenSlide fixture {path} is not available (clone shared/ beside the repo)")
    with open_slide(path, **kwargs) as slide:
        mpp = 0.5 if name == "boxes.tiff" else 0.499
        grid = tile_grid(slide, None, mpp=mpp, tile_size=tile_size)
        tiles = np.concatenate([batch for _, batch in read_tiles(slide, grid)])
    assert len(tiles) >= 4
    ours, _ = _assert_matches_reference(tiles, mpp=mpp)
    assert np.ptp(ours, axis=0).max() > 0


def test_focal_morphology_probe_not_worse_than_reference(cohort_tiles, synthetic_cohort_dir):
    """Tile-level logistic probe of planted-region tiles vs the rest, patient-grouped CV."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from lnmkit.synth import load_planted_mask

    tiles, coords, slide_ids, patients, grids, ref = cohort_tiles
    label = np.zeros(len(tiles), dtype=bool)
    for slide_id, grid in grids.items():
        rows = slide_ids == slide_id
        inside = load_planted_mask(synthetic_cohort_dir, slide_id).tile_labels(
            coords[rows], grid.tile_size_level0)
        label[rows] = inside >= 0.5
    assert 10 <= label.sum() <= len(label) - 10 and len(np.unique(patients[label])) >= 2
    ours = get_encoder("stain-texture").encode(tiles)
    cv = GroupKFold(n_splits=4)
    aucs = []
    for features in (ref, ours):
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        score = cross_val_predict(probe, features, label, groups=patients, cv=cv,
                                  method="decision_function")
        aucs.append(roc_auc_score(label, score))
    ref_auc, our_auc = aucs
    assert ref_auc > 0.8, f"the probe finds no planted morphology (AUC {ref_auc:.3f})"
    assert our_auc >= ref_auc - 1e-3, (our_auc, ref_auc)


def test_stain_texture_results_do_not_depend_on_batch_size():
    rng = np.random.default_rng(5)
    tiles = rng.integers(0, 256, (7, 64, 64, 3), dtype=np.uint8)
    one = get_encoder("stain-texture", batch_size=1).encode(tiles)
    np.testing.assert_array_equal(one, get_encoder("stain-texture", batch_size=64).encode(tiles))


# The first, array formulation of stain-texture (version 1.0), kept as the reference
# the compiled encoder is held to. It is slow (per-batch temporaries, float32 sums)
# but each step is plain numpy/scipy.

from scipy import ndimage  # noqa: E402

_REF_STAIN_VECTORS = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
_REF_STAIN_VECTORS = _REF_STAIN_VECTORS / np.linalg.norm(_REF_STAIN_VECTORS, axis=1, keepdims=True)
_REF_STAIN_FROM_OD = np.linalg.inv(_REF_STAIN_VECTORS).astype(np.float32)
_REF_OD_LUT = (-np.log10(np.maximum(np.arange(256), 1) / 255.0)).astype(np.float32)

_REF_BACKGROUND_OD = 0.15
_REF_DARK_OD = 1.0
_REF_H_LEVELS = (0.2, 0.35, 0.5)
_REF_NUCLEUS_H = 0.35
_REF_MIN_NUCLEUS_UM2 = 8.0
_REF_LARGE_NUCLEUS_UM2 = 80.0
_REF_HIST_BINS, _REF_HIST_MAX = 200, 2.0
_REF_PERCENTILES = (10, 25, 50, 75, 90)
_REF_GLCM_LEVELS, _REF_GLCM_STEP = 8, 0.15
_REF_GLCM_DISTANCES = (1, 2)
_REF_HAAR_LEVELS = 4

# 4-connectivity inside a tile, none across the batch axis.
_REF_STRUCTURE = np.zeros((3, 3, 3), dtype=bool)
_REF_STRUCTURE[1] = ndimage.generate_binary_structure(2, 1)


def _ref_riu2_lut():
    """Map 8-bit LBP codes to rotation-invariant uniform bins 0..9 (Ojala et al. 2002)."""
    lut = np.empty(256, dtype=np.int64)
    for code in range(256):
        bits = [(code >> i) & 1 for i in range(8)]
        transitions = sum(bits[i] != bits[(i + 1) % 8] for i in range(8))
        lut[code] = sum(bits) if transitions <= 2 else 9
    return lut


_REF_RIU2 = _ref_riu2_lut()


def _ref_feature_names():
    names = ["background_fraction", "dark_fraction"]
    for channel in ("od", "h", "e"):
        names += [f"{channel}_mean", f"{channel}_std"] + [f"{channel}_p{q}" for q in _REF_PERCENTILES]
    names += ["residual_mean", "residual_std", "h_fraction_of_stain",
              "od_red_mean", "od_green_mean", "od_blue_mean"]
    names += [f"nuclear_fraction_h{int(round(t * 100)):03d}" for t in _REF_H_LEVELS]
    names += ["nuclei_per_10k_um2", "nuclear_area_mean_um2", "nuclear_area_p25_um2",
              "nuclear_area_p50_um2", "nuclear_area_p75_um2", "large_nuclear_area_fraction",
              "h_in_nuclei_mean", "e_outside_nuclei_mean"]
    for scale in (1, 2):
        names += [f"lbp_s{scale}_u{k}" for k in range(9)] + [f"lbp_s{scale}_nonuniform"]
    for d in _REF_GLCM_DISTANCES:
        names += [f"glcm_d{d}_{p}" for p in ("contrast", "homogeneity", "energy", "correlation",
                                            "entropy")]
    names += [f"haar_h_rms_l{k}" for k in range(1, _REF_HAAR_LEVELS + 1)]
    names += [f"haar_e_rms_l{k}" for k in range(1, _REF_HAAR_LEVELS + 1)]
    names += [f"haar_h_anisotropy_l{k}" for k in range(1, _REF_HAAR_LEVELS + 1)]
    return names


_REF_NAMES = _ref_feature_names()


def _ref_safe_div(num, den):
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


def _ref_row_dot(a, b):
    """Per-row dot product of two (B, P) float32 arrays."""
    return np.einsum("ij,ij->i", a, b).astype(np.float64)


def _ref_masked_mean_std(values, w, n):
    """Weighted mean and standard deviation per row (two-pass: float32 cancels otherwise)."""
    mean = _ref_safe_div(_ref_row_dot(values, w), n)
    centred = values - mean.astype(np.float32)[:, None]
    std = np.sqrt(_ref_safe_div(_ref_row_dot(centred * centred, w), n))
    return mean, std


def _ref_binned_counts(index, keep, n_rows, n_bins):
    """Per-row counts of ``index`` (B, P) in [0, n_bins) over ``keep`` pixels.

    Pixels outside ``keep`` are sent to one extra bin that is dropped, which is
    cheaper than float weights.
    """
    flat = index + (np.arange(n_rows, dtype=np.int64) * n_bins).reshape((-1,) + (1,) * (index.ndim - 1))
    flat = np.where(keep, flat, n_rows * n_bins)
    return np.bincount(flat.ravel(), minlength=n_rows * n_bins + 1)[:-1].reshape(n_rows, n_bins)


def _ref_masked_stats(values, w, tissue, n, sub_values, sub_tissue):
    """Mean, std and percentiles of ``values`` (B, P) over tissue pixels, per row.

    Means and standard deviations use every pixel; percentiles come from a
    fixed-range histogram (0.01 OD bins) of every second pixel in both axes,
    which leaves them unchanged at that resolution and costs a quarter.
    """
    b = values.shape[0]
    mean, std = _ref_masked_mean_std(values, w, n)
    bins = (sub_values * (_REF_HIST_BINS / _REF_HIST_MAX)).astype(np.int64)
    np.clip(bins, 0, _REF_HIST_BINS - 1, out=bins)
    counts = _ref_binned_counts(bins, sub_tissue, b, _REF_HIST_BINS)
    cum = np.cumsum(counts, axis=1)
    n_sub = cum[:, -1]
    width = _REF_HIST_MAX / _REF_HIST_BINS
    cols = [mean, std]
    for q in _REF_PERCENTILES:
        idx = (cum < (q / 100.0) * n_sub[:, None]).sum(1)
        cols.append(np.where(n_sub > 0, (np.minimum(idx, _REF_HIST_BINS - 1) + 0.5) * width, 0.0))
    return cols


def _ref_nuclear_features(h, e, tissue, n_tissue, shape, px_area_um2):
    b, height, width = shape
    nuclei = (h >= _REF_NUCLEUS_H) & tissue
    labels, n_labels = ndimage.label(nuclei.reshape(shape), structure=_REF_STRUCTURE)
    flat_labels = labels.reshape(b, -1)
    areas = np.bincount(flat_labels.ravel(), minlength=n_labels + 1)[1:] * px_area_um2
    # Scan-order labelling numbers every tile's components after the previous tile's.
    last = np.maximum.accumulate(flat_labels.max(axis=1))
    tile_of = np.searchsorted(last, np.arange(1, n_labels + 1), side="left")
    keep = areas >= _REF_MIN_NUCLEUS_UM2
    areas, tile_of = areas[keep], tile_of[keep]
    count = np.bincount(tile_of, minlength=b).astype(np.float64)
    per_10k = _ref_safe_div(count * 1e4, n_tissue * px_area_um2)
    nuclear_area = np.bincount(tile_of, weights=areas, minlength=b)
    mean_area = _ref_safe_div(nuclear_area, count)
    order = np.lexsort((areas, tile_of))
    sorted_areas = np.append(areas[order], 0.0)
    start = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
    quantiles = []
    for q in (0.25, 0.5, 0.75):
        pos = start + np.floor(q * np.maximum(count - 1, 0)).astype(np.int64)
        quantiles.append(np.where(count > 0, sorted_areas[np.minimum(pos, len(areas))], 0.0))
    large_area = np.bincount(tile_of, weights=areas * (areas >= _REF_LARGE_NUCLEUS_UM2), minlength=b)
    large_fraction = _ref_safe_div(large_area, nuclear_area)
    n_nuc = np.count_nonzero(nuclei, axis=1)
    h_in = _ref_safe_div(_ref_row_dot(h, nuclei.astype(np.float32)), n_nuc)
    outside = tissue & ~nuclei
    e_out = _ref_safe_div(_ref_row_dot(e, outside.astype(np.float32)), np.count_nonzero(outside, axis=1))
    return [per_10k, mean_area, *quantiles, large_fraction, h_in, e_out]


_REF_LBP_SHIFTS = ((0, 0), (0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0))


def _ref_lbp_hist(img, tissue):
    """Rotation-invariant uniform LBP(8, 1) histogram over tissue pixels, per tile."""
    b = img.shape[0]
    c = img[:, 1:-1, 1:-1]
    code = np.zeros(c.shape, dtype=np.uint8)
    for bit, (dy, dx) in enumerate(_REF_LBP_SHIFTS):
        neighbour = img[:, dy:dy + c.shape[1], dx:dx + c.shape[2]]
        code |= np.greater_equal(neighbour, c).view(np.uint8) << np.uint8(bit)
    hist = _ref_binned_counts(_REF_RIU2[code], tissue[:, 1:-1, 1:-1], b, 10).astype(np.float64)
    return _ref_safe_div(hist, hist.sum(1, keepdims=True))


def _ref_glcm_props(q, tissue, distance):
    """Symmetric GLCM of the quantised H channel (0 and 90 degrees pooled)."""
    b, levels = q.shape[0], _REF_GLCM_LEVELS
    counts = np.zeros((b, levels * levels))
    for qa, qb, wa, wb in (
        (q[:, :, :-distance], q[:, :, distance:], tissue[:, :, :-distance], tissue[:, :, distance:]),
        (q[:, :-distance, :], q[:, distance:, :], tissue[:, :-distance, :], tissue[:, distance:, :]),
    ):
        counts += _ref_binned_counts(qa * levels + qb, wa & wb, b, levels * levels)
    p = counts.reshape(b, levels, levels)
    p = p + p.transpose(0, 2, 1)
    p = _ref_safe_div(p, p.sum((1, 2), keepdims=True))
    i, j = np.meshgrid(np.arange(levels), np.arange(levels), indexing="ij")
    diff2 = (i - j) ** 2
    contrast = (p * diff2).sum((1, 2))
    homogeneity = (p / (1.0 + diff2)).sum((1, 2))
    energy = np.sqrt((p * p).sum((1, 2)))
    mu_i = (p * i).sum((1, 2))[:, None, None]
    mu_j = (p * j).sum((1, 2))[:, None, None]
    var_i = (p * (i - mu_i) ** 2).sum((1, 2))
    var_j = (p * (j - mu_j) ** 2).sum((1, 2))
    cov = (p * (i - mu_i) * (j - mu_j)).sum((1, 2))
    correlation = _ref_safe_div(cov, np.sqrt(var_i * var_j))
    logp = np.log(p, out=np.zeros_like(p), where=p > 0)
    entropy = -(p * logp).sum((1, 2))
    return [contrast, homogeneity, energy, correlation, entropy]


def _ref_haar(img, weight):
    """RMS Haar detail amplitude and anisotropy per dyadic level, tissue-weighted."""
    rms, aniso = [], []
    b = img.shape[0]
    for _ in range(_REF_HAAR_LEVELS):
        h2, w2 = img.shape[1] // 2 * 2, img.shape[2] // 2 * 2
        if h2 < 2 or w2 < 2:
            rms.append(np.zeros(b))
            aniso.append(np.zeros(b))
            continue
        img, weight = img[:, :h2, :w2], weight[:, :h2, :w2]
        a, b_, c, d = img[:, 0::2, 0::2], img[:, 0::2, 1::2], img[:, 1::2, 0::2], img[:, 1::2, 1::2]
        top, bottom, left_diff, right_diff = a + b_, c + d, a - b_, c - d
        vertical = (top - bottom).reshape(b, -1)
        horizontal = (left_diff + right_diff).reshape(b, -1)
        diagonal = (left_diff - right_diff).reshape(b, -1)
        w = (weight[:, 0::2, 0::2] + weight[:, 0::2, 1::2] + weight[:, 1::2, 0::2]
             + weight[:, 1::2, 1::2]) * 0.25
        wf = w.reshape(b, -1)
        wsum = wf.sum(1, dtype=np.float64)
        # The 1/2 of the orthonormal Haar filters is folded into the 0.25 below.
        ev = _ref_safe_div(_ref_row_dot(vertical * vertical, wf) * 0.25, wsum)
        eh = _ref_safe_div(_ref_row_dot(horizontal * horizontal, wf) * 0.25, wsum)
        ed = _ref_safe_div(_ref_row_dot(diagonal * diagonal, wf) * 0.25, wsum)
        rms.append(np.sqrt(ev + eh + ed))
        aniso.append(_ref_safe_div(np.abs(ev - eh), ev + eh))
        img, weight = (top + bottom) * 0.25, w
    return rms, aniso



def _ref_encode_batch(tiles, mpp):
    b, height, width, _ = tiles.shape
    n_px = float(height * width)
    px_area = float(mpp) ** 2
    # Planar (B, P) channel arrays: (N, 3) @ (3, 3) products are slow in numpy.
    planes = np.ascontiguousarray(tiles.reshape(b, -1, 3).transpose(2, 0, 1))
    red, green, blue = (_REF_OD_LUT[plane] for plane in planes)
    h, e, residual = (_ref_mix(red, green, blue, _REF_STAIN_FROM_OD[:, k]) for k in range(3))
    np.maximum(h, 0, out=h)
    np.maximum(e, 0, out=e)
    od_norm = _ref_mix(red, green, blue, None)
    tissue = od_norm >= _REF_BACKGROUND_OD
    w = tissue.astype(np.float32)
    n_tissue = np.count_nonzero(tissue, axis=1).astype(np.float64)
    dark = np.minimum(np.minimum(red, green), blue) > _REF_DARK_OD
    cols = [1.0 - n_tissue / n_px, np.count_nonzero(dark, axis=1) / n_px]

    def grid(x):
        return x.reshape(b, height, width)

    def sub(x):
        return np.ascontiguousarray(grid(x)[:, ::2, ::2]).reshape(b, -1)

    sub_tissue = sub(tissue)
    for channel in (od_norm, h, e):
        cols += _ref_masked_stats(channel, w, tissue, n_tissue, sub(channel), sub_tissue)
    cols += list(_ref_masked_mean_std(residual, w, n_tissue))
    h_mean, e_mean = cols[2 + 7], cols[2 + 14]
    cols.append(_ref_safe_div(h_mean, h_mean + e_mean))
    cols += [_ref_safe_div(_ref_row_dot(od, w), n_tissue) for od in (red, green, blue)]
    for level in _REF_H_LEVELS:
        cols.append(_ref_safe_div(np.count_nonzero((h >= level) & tissue, axis=1), n_tissue))
    cols += _ref_nuclear_features(h, e, tissue, n_tissue, (b, height, width), px_area)

    # Texture at half resolution (1 µm/px at 20x), the scale of chromatin and
    # nuclear borders, and at quarter resolution for nuclear arrangement.
    h_half, t_half = _ref_pool2(grid(h), grid(tissue))
    h_quarter, t_quarter = _ref_pool2(h_half, t_half)
    for img, msk in ((h_half, t_half), (h_quarter, t_quarter)):
        if img.shape[1] >= 3 and img.shape[2] >= 3:
            cols += list(_ref_lbp_hist(img, msk).T)
        else:
            cols += [np.zeros(b)] * 10
    q = (h_half * (1.0 / _REF_GLCM_STEP)).astype(np.int64)
    np.clip(q, 0, _REF_GLCM_LEVELS - 1, out=q)
    for d in _REF_GLCM_DISTANCES:
        if q.shape[1] > d and q.shape[2] > d:
            cols += _ref_glcm_props(q, t_half, d)
        else:
            cols += [np.zeros(b)] * 5
    weight = grid(w)
    h_rms, h_aniso = _ref_haar(grid(h), weight)
    e_rms, _ = _ref_haar(grid(e), weight)
    cols += h_rms + e_rms + h_aniso
    return np.stack([np.asarray(c, dtype=np.float64) for c in cols], axis=1).astype(np.float32)


def _ref_mix(red, green, blue, weights):
    """``w0 r + w1 g + w2 b`` (or the Euclidean norm when ``weights`` is None), in place."""
    if weights is None:
        out = np.square(red)
        out += np.square(green)
        out += np.square(blue)
        return np.sqrt(out, out=out)
    out = red * weights[0]
    out += green * weights[1]
    out += blue * weights[2]
    return out


def _ref_pool2(img, mask):
    """2 x 2 mean pooling of an image and "all four tissue" pooling of its mask."""
    hh, ww = img.shape[1] // 2 * 2, img.shape[2] // 2 * 2
    img, mask = img[:, :hh, :ww], mask[:, :hh, :ww]
    pooled = (img[:, 0::2, 0::2] + img[:, 0::2, 1::2] + img[:, 1::2, 0::2] + img[:, 1::2, 1::2]) * 0.25
    pooled_mask = mask[:, 0::2, 0::2] & mask[:, 0::2, 1::2] & mask[:, 1::2, 0::2] & mask[:, 1::2, 1::2]
    return pooled, pooled_mask
