"""Tile encoders: registry, stain-texture descriptor, ResNet-50 trunk, timm/hf-hub loaders."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pytest

from lnmkit.exceptions import IncompatibleWeightsError, MissingWeightsError
from lnmkit.features import PATHOLOGY_ENCODERS, get_encoder, list_encoders, pathology_encoders


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


def test_glcm_props_against_skimage():
    """Batched co-occurrence statistics equal scikit-image's (0 and 90 degrees pooled, symmetric)."""
    from skimage.feature import graycomatrix, graycoprops

    from lnmkit.features.encoders._stain_texture import _glcm_props

    rng = np.random.default_rng(0)
    q = rng.integers(0, 8, (2, 40, 40))
    q[1] = np.minimum(q[1] // 2 + np.arange(40)[None, :] // 10, 7)
    for distance in (1, 2):
        ours = np.array(_glcm_props(q, np.ones(q.shape, bool), distance))
        for i in range(2):
            glcm = graycomatrix(q[i].astype(np.uint8), [distance], [0, np.pi / 2], levels=8,
                                symmetric=True).sum(axis=3, keepdims=True).astype(float)
            glcm /= glcm.sum()
            for row, prop in enumerate(("contrast", "homogeneity", "energy", "correlation")):
                assert ours[row, i] == pytest.approx(graycoprops(glcm, prop)[0, 0], rel=1e-9)


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
