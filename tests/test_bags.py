"""Feature bags: HDF5 layout, atomic writes, TRIDENT/CLAM interoperability."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from lnmkit.exceptions import FeatureBagError
from lnmkit.features import FeatureBag, read_bag, write_bag


def _bag(n=1500, dim=12, seed=0):
    rng = np.random.default_rng(seed)
    attrs = {"encoder": "stain-texture", "encoder_version": "1.0", "mpp": 0.5, "tile_size": 224,
             "tile_size_level0": 448, "slide_mpp": 0.25, "slide_id": "S1", "patient_id": "P1",
             "params_hash": "abc", "level": 1}
    return FeatureBag(rng.normal(size=(n, dim)), rng.integers(0, 10**6, (n, 2)), attrs)


def test_round_trip_dtypes_attrs_and_chunks(tmp_path):
    bag = _bag()
    path = write_bag(tmp_path / "S1.h5", bag)
    back = read_bag(path)
    np.testing.assert_array_equal(back.features, bag.features.astype(np.float32))
    np.testing.assert_array_equal(back.coords, bag.coords)
    assert back.features.dtype == np.float32 and back.coords.dtype == np.int64
    assert back.slide_id == "S1" and back.patient_id == "P1"
    assert back.attrs["dim"] == 12 and back.attrs["tile_size_level0"] == 448
    assert back.attrs["lnmkit_version"]
    with h5py.File(path) as f:
        assert f["features"].chunks == (1024, 12)
        assert f["coords"].dtype == np.int64
        # What TRIDENT's and CLAM's readers look for.
        assert f["coords"].attrs["patch_size_level0"] == 448
        assert f["coords"].attrs["patch_size"] == 224
        assert f["coords"].attrs["target_magnification"] == 20
        assert f["coords"].attrs["level0_magnification"] == 40
        assert f["features"][:].shape == (1500, 12)
    assert not list(tmp_path.glob(".*part"))


def test_small_and_empty_bags(tmp_path):
    small = write_bag(tmp_path / "small.h5", _bag(n=3))
    with h5py.File(small) as f:
        assert f["features"].chunks == (3, 12)
    empty = read_bag(write_bag(tmp_path / "empty.h5", _bag(n=0)))
    assert empty.features.shape == (0, 12) and empty.coords.shape == (0, 2)


def test_rewriting_a_read_bag(tmp_path):
    back = read_bag(write_bag(tmp_path / "a.h5", _bag(n=5)))
    again = read_bag(write_bag(tmp_path / "b.h5", back))
    np.testing.assert_array_equal(again.features, back.features)
    assert again.attrs["coords_attrs"]["patch_size_level0"] == 448


@pytest.mark.parametrize("batched", [False, True])
def test_reads_trident_layout(tmp_path, batched):
    """A bag written the way TRIDENT/CLAM write theirs (attributes on coords only)."""
    rng = np.random.default_rng(1)
    features = rng.normal(size=(7, 1024)).astype(np.float32)
    coords = rng.integers(0, 5000, (7, 2)).astype(np.int64)
    path = tmp_path / "TCGA-XX-0001.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("features", data=features[None] if batched else features)
        ds = f.create_dataset("coords", data=coords[None] if batched else coords)
        ds.attrs.update({"patch_size": 256, "patch_size_level0": 512, "patch_level": 0,
                         "target_magnification": 20, "level0_magnification": 40, "overlap": 0,
                         "name": "TCGA-XX-0001"})
    bag = read_bag(path)
    np.testing.assert_array_equal(bag.features, features)
    np.testing.assert_array_equal(bag.coords, coords)
    assert bag.slide_id == "TCGA-XX-0001"
    assert bag.attrs["tile_size"] == 256 and bag.attrs["tile_size_level0"] == 512
    assert bag.attrs["mpp"] == pytest.approx(0.5) and bag.attrs["dim"] == 1024


def test_bad_files_raise_feature_bag_error(tmp_path):
    with pytest.raises(FeatureBagError, match="not found"):
        read_bag(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(FeatureBagError, match=r"text\.h5.*HDF5"):
        read_bag(tmp_path / "text.h5")
    with h5py.File(tmp_path / "nocoords.h5", "w") as f:
        f.create_dataset("features", data=np.zeros((2, 3)))
    with pytest.raises(FeatureBagError, match=r"missing dataset\(s\) \['coords'\]"):
        read_bag(tmp_path / "nocoords.h5")
    with h5py.File(tmp_path / "mismatch.h5", "w") as f:
        f.create_dataset("features", data=np.zeros((2, 3)))
        f.create_dataset("coords", data=np.zeros((3, 2)))
    with pytest.raises(FeatureBagError, match="do not form a bag"):
        read_bag(tmp_path / "mismatch.h5")


def test_feature_bag_validates_shapes():
    with pytest.raises(FeatureBagError, match="coords must have shape"):
        FeatureBag(np.zeros((3, 4)), np.zeros((2, 2)))
    with pytest.raises(FeatureBagError, match="features must be 2-D"):
        FeatureBag(np.zeros(3), np.zeros((3, 2)))


def test_failed_write_leaves_no_file(tmp_path):
    bag = _bag(n=4)
    bag.attrs["bad"] = object()  # h5py cannot store this: the write fails midway
    with pytest.raises(TypeError):
        write_bag(tmp_path / "S1.h5", bag)
    assert list(tmp_path.iterdir()) == []


def test_pickled_bag_is_refused_without_unpickling(tmp_path):
    import pickle

    marker = tmp_path / "unpickled"

    class _Trap:
        def __reduce__(self):
            return (marker.touch, ())

    for name in ("bag.pt", "bag.pkl"):
        (tmp_path / name).write_bytes(pickle.dumps({"features": _Trap()}))
        with pytest.raises(FeatureBagError, match=rf"{name}: PyTorch/pickle files are never read"):
            read_bag(tmp_path / name)
    # The same bytes under an .h5 name are simply not HDF5.
    (tmp_path / "renamed.h5").write_bytes((tmp_path / "bag.pt").read_bytes())
    with pytest.raises(FeatureBagError, match=r"renamed\.h5: cannot be read as HDF5"):
        read_bag(tmp_path / "renamed.h5")
    assert not marker.exists()
    with pytest.raises(FeatureBagError, match="is a folder"):
        read_bag(tmp_path)


def test_non_finite_features_are_refused_naming_the_tile(tmp_path):
    bag = _bag(n=5, dim=3)
    bag.features[3, 1] = np.nan
    with pytest.raises(FeatureBagError, match=r"S1\.h5\).*1 of 5 tile\(s\).*row 3.*column 1"):
        write_bag(tmp_path / "S1.h5", bag)
    assert not (tmp_path / "S1.h5").exists()
    with h5py.File(tmp_path / "inf.h5", "w") as f:
        f.create_dataset("features", data=np.array([[0.0, 1.0], [np.inf, 2.0]], np.float32))
        f.create_dataset("coords", data=np.array([[0, 0], [224, 448]], np.int64))
    with pytest.raises(FeatureBagError, match=r"inf\.h5: 1 of 2 tile\(s\).*row 1, tile at \(x, y\) = \(224, 448\)"):
        read_bag(tmp_path / "inf.h5")


def test_fractional_coords_are_refused(tmp_path):
    with h5py.File(tmp_path / "frac.h5", "w") as f:
        f.create_dataset("features", data=np.zeros((2, 3), np.float32))
        f.create_dataset("coords", data=np.array([[0.5, 0.0], [1.0, 2.0]]))
    with pytest.raises(FeatureBagError, match=r"frac\.h5: coords must be whole level-0 pixel"):
        read_bag(tmp_path / "frac.h5")
    with h5py.File(tmp_path / "whole.h5", "w") as f:  # CLAM writes float coords with whole values
        f.create_dataset("features", data=np.zeros((2, 3), np.float32))
        f.create_dataset("coords", data=np.array([[0.0, 0.0], [256.0, 512.0]]))
    assert read_bag(tmp_path / "whole.h5").coords.tolist() == [[0, 0], [256, 512]]
