"""Hugging Face ``transformers`` pathology encoders (Phikon-v2 layout) from locally saved weights."""

import numpy as np
import pytest
import torch

from lnmkit.exceptions import MissingWeightsError
from lnmkit.features import get_encoder

transformers = pytest.importorskip("transformers")


def _tiny_dinov2(seed=0):
    torch.manual_seed(seed)
    config = transformers.Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=64, image_size=224, patch_size=14)
    return transformers.Dinov2Model(config).eval()


def _reference(model, tiles, mean, std):
    x = torch.from_numpy(tiles).permute(0, 3, 1, 2).float() / 255.0
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.inference_mode():
        return model(pixel_values=x).last_hidden_state[:, 0].numpy()


@pytest.fixture(scope="module")
def saved_phikon(tmp_path_factory):
    folder = tmp_path_factory.mktemp("phikon-v2")
    model = _tiny_dinov2()
    model.save_pretrained(folder, safe_serialization=True)
    assert (folder / "model.safetensors").is_file()
    return folder, model


def test_phikon_loads_locally_saved_weights_and_matches_the_model(saved_phikon):
    folder, model = saved_phikon
    encoder = get_encoder("phikon-v2", weights=folder)
    assert encoder.dim == 32
    assert encoder.input_size == 224
    tiles = np.random.default_rng(0).integers(0, 256, size=(3, 224, 224, 3), dtype=np.uint8)
    features = encoder.encode(tiles)
    assert features.shape == (3, 32) and features.dtype == np.float32
    expected = _reference(model, tiles, encoder.mean, encoder.std)
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-4)


def test_phikon_found_in_huggingface_cache(saved_phikon, tmp_path, monkeypatch):
    folder, model = saved_phikon
    snapshot = tmp_path / "hub" / "models--owkin--phikon-v2" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (snapshot / name).write_bytes((folder / name).read_bytes())
    (tmp_path / "hub" / "models--owkin--phikon-v2" / "refs").mkdir()
    (tmp_path / "hub" / "models--owkin--phikon-v2" / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("LNMKIT_WEIGHTS_DIR", raising=False)
    encoder = get_encoder("hf-hub:owkin/phikon-v2")
    tiles = np.full((1, 224, 224, 3), 200, dtype=np.uint8)
    np.testing.assert_allclose(encoder.encode(tiles), _reference(model, tiles, encoder.mean, encoder.std),
                               rtol=1e-4, atol=1e-4)


def test_phikon_without_weights_names_the_repository(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.delenv("LNMKIT_WEIGHTS_DIR", raising=False)
    with pytest.raises(MissingWeightsError, match="phikon-v2"):
        get_encoder("hf-hub:owkin/phikon-v2")
