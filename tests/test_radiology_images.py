"""Node radiomics on synthetic CT volumes with ellipsoid nodes of known size."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from lnmkit.cli import app
from lnmkit.exceptions import ImageGeometryError, RadiologyImageError, RadiologyWarning
from lnmkit.radiology import NodeFeatures, NodeRadiomics, read_images_table
from lnmkit.synth import make_ct_volume, write_ct_case

SPACING = (0.7, 0.7, 3.0)
SHAPE = (100, 100, 22)
# Centres deliberately off the voxel grid; diameters along the node's own axes (mm).
NODES = [
    dict(center_mm=(20.3, 22.1, 31.0), axes_mm=(20.0, 12.0, 15.0), hu=40, label=1),
    dict(center_mm=(47.2, 46.9, 34.4), axes_mm=(18.0, 10.0, 13.0), hu=45, label=2, rotation=35.0),
    dict(center_mm=(20.5, 50.2, 30.7), axes_mm=(22.0, 11.0, 12.0), hu=40, label=3, rotation=(0.0, 25.0, 40.0)),
    dict(center_mm=(50.0, 20.0, 30.0), axes_mm=(15.0, 15.0, 15.0), hu=40, label=4),
]


@pytest.fixture(scope="module")
def ct():
    return make_ct_volume(SHAPE, SPACING, NODES, seed=3)


@pytest.fixture(scope="module")
def measured(ct):
    return NodeRadiomics().fit().measure(*ct).set_index("label")


def test_make_ct_volume_geometry_and_intensities(ct):
    image, mask = ct
    assert image.GetSize() == SHAPE and mask.GetSize() == SHAPE
    assert image.GetSpacing() == pytest.approx(SPACING)
    values, labels = sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(mask)
    assert sorted(np.unique(labels)) == [0, 1, 2, 3, 4]
    assert values[labels == 0].mean() == pytest.approx(-100, abs=1.0)  # fat
    assert values[labels == 2].mean() == pytest.approx(45, abs=2.0)  # soft tissue


def test_short_and_long_axes_within_1mm_on_anisotropic_grid(measured):
    # Unrotated and in-plane rotated nodes: the axial short axis is the second diameter,
    # the axial long axis the first; the 3-D Feret diameter the largest.
    for label in (1, 2):
        a, b, _ = NODES[label - 1]["axes_mm"]
        assert measured.loc[label, "short_axis_mm"] == pytest.approx(b, abs=1.0)
        assert measured.loc[label, "axial_long_axis_mm"] == pytest.approx(a, abs=1.0)
    for label in (1, 2, 3):
        assert measured.loc[label, "long_axis_mm"] == pytest.approx(max(NODES[label - 1]["axes_mm"]), abs=1.0)
    assert measured.loc[3, "long_axis_mm"] > measured.loc[3, "axial_long_axis_mm"]  # tilted out of plane
    assert measured.loc[4, "short_axis_mm"] == pytest.approx(15.0, abs=1.0)
    assert measured.loc[4, "axis_ratio"] > 0.9


def test_volume_within_5_percent_of_ellipsoid(measured):
    for node in NODES:
        a, b, c = node["axes_mm"]
        truth = 4.0 / 3.0 * np.pi * (a / 2) * (b / 2) * (c / 2)
        assert measured.loc[node["label"], "volume_mm3"] == pytest.approx(truth, rel=0.05)
        assert measured.loc[node["label"], "voxel_count"] * np.prod(SPACING) == pytest.approx(
            measured.loc[node["label"], "volume_mm3"])


def test_sphericity_orders_sphere_above_elongated_node(measured):
    assert 0.9 < measured.loc[4, "sphericity"] <= 1.0
    assert measured.loc[1, "sphericity"] < measured.loc[4, "sphericity"]


def test_first_order_and_texture(measured):
    assert measured.loc[2, "intensity_mean"] == pytest.approx(45, abs=2.0)
    assert measured.loc[1, "intensity_std"] == pytest.approx(12, abs=2.0)  # the added noise
    assert measured.loc[1, "intensity_kurtosis"] == pytest.approx(3.0, abs=0.5)
    assert measured[["suv_max", "suv_mean"]].isna().all().all()
    assert measured[["glcm_contrast", "glcm_homogeneity", "glcm_energy", "glcm_correlation"]].notna().all().all()
    noisy = NodeRadiomics().fit().measure(*make_ct_volume(SHAPE, SPACING, NODES[:1], seed=3, noise_hu=40))
    assert noisy.loc[0, "glcm_contrast"] > 2 * measured.loc[1, "glcm_contrast"]
    assert noisy.loc[0, "intensity_entropy"] > measured.loc[1, "intensity_entropy"]


def test_pet_gives_suv():
    image, mask = make_ct_volume((40, 40, 12), (2.0, 2.0, 3.0), [dict(center_mm=(40, 40, 18), axes_mm=(16, 14, 15),
                                                                      hu=6.0)], background_hu=0.8, noise_hu=0.3)
    out = NodeRadiomics().fit().measure(image, mask, modality="PET-CT")
    assert out.loc[0, "suv_max"] == out.loc[0, "intensity_max"] and out.loc[0, "suv_mean"] == pytest.approx(6, abs=0.2)


def test_non_axial_acquisition_is_measured_in_the_axial_plane(ct, measured):
    image, mask = ct
    # Same physical volume stored with image axes (x, z, y): a coronal-like acquisition.
    arrays = [np.ascontiguousarray(np.transpose(sitk.GetArrayFromImage(v), (1, 0, 2))) for v in (image, mask)]
    coronal = []
    for array in arrays:
        vol = sitk.GetImageFromArray(array)
        vol.SetSpacing((SPACING[0], SPACING[2], SPACING[1]))
        vol.SetDirection((1, 0, 0, 0, 0, 1, 0, 1, 0))
        coronal.append(vol)
    out = NodeRadiomics().fit().measure(*coronal).set_index("label")
    for column in ("short_axis_mm", "axial_long_axis_mm", "long_axis_mm", "volume_mm3"):
        np.testing.assert_allclose(out[column], measured[column], rtol=0.06, err_msg=column)


def test_spacing_mismatch_names_both_files(tmp_path):
    image_path, mask_path = write_ct_case(tmp_path, "p1", shape=(40, 40, 10), spacing=SPACING,
                                          nodes=[dict(center_mm=(14, 14, 15), axes_mm=(10, 8, 9))])
    mask = sitk.ReadImage(str(mask_path))
    mask.SetSpacing((0.8, 0.8, 3.0))
    bad = tmp_path / "p1_mask_bad.nrrd"
    sitk.WriteImage(mask, str(bad))
    rad = NodeRadiomics().fit()
    with pytest.raises(ImageGeometryError, match=r"spacing \(0\.8, 0\.8, 3\) mm vs image \(0\.7, 0\.7, 3\) mm") as info:
        rad.measure(image_path, bad)
    assert str(bad) in str(info.value) and str(image_path) in str(info.value)
    assert "resample_mask=True" in str(info.value)
    # Opting in resamples the mask (nearest neighbour) onto the image grid.
    out = NodeRadiomics(resample_mask=True).fit().measure(image_path, bad)
    assert list(out["label"]) == [1]
    far = sitk.Image(mask)
    far.SetOrigin((500.0, 0.0, 0.0))
    with pytest.raises(ImageGeometryError, match="do not overlap"):
        NodeRadiomics(resample_mask=True).fit().measure(sitk.ReadImage(str(image_path)), far)


def test_unreadable_and_wrong_files_are_named(tmp_path):
    rad = NodeRadiomics().fit()
    junk = tmp_path / "junk.nii.gz"
    junk.write_text("not an image")
    with pytest.raises(RadiologyImageError, match="junk.nii.gz: cannot be read"):
        rad.measure(junk, junk)
    flat = tmp_path / "flat.nrrd"
    sitk.WriteImage(sitk.Image(8, 8, sitk.sitkFloat32), str(flat))
    with pytest.raises(RadiologyImageError, match="flat.nrrd: is 2-D"):
        rad.measure(flat, flat)
    with pytest.raises(RadiologyImageError, match="<image>: is 2-D"):
        rad.measure(sitk.Image(8, 8, sitk.sitkFloat32), flat)
    with pytest.raises(RadiologyImageError, match="missing.nii.gz: file not found"):
        rad.measure(tmp_path / "missing.nii.gz", flat)


def _case_dir(tmp_path):
    """Two patients with images, one without; node rows map to mask labels."""
    write_ct_case(tmp_path / "img", "P1", shape=(60, 60, 12), spacing=SPACING,
                  nodes=[dict(center_mm=(14, 14, 15), axes_mm=(12, 9, 10), label=1),
                         dict(center_mm=(28, 28, 18), axes_mm=(10, 6, 9), label=2)])
    write_ct_case(tmp_path / "img", "P2", shape=(60, 60, 12), spacing=SPACING,
                  nodes=[dict(center_mm=(20, 20, 15), axes_mm=(9, 7, 9), label=5)])
    pd.DataFrame({"patient_id": ["P1", "P2"], "image_path": ["img/P1_ct.nii.gz", "img/P2_ct.nii.gz"],
                  "mask_path": ["img/P1_mask.nii.gz", "img/P2_mask.nii.gz"], "modality": ["CT", "CT"]}
                 ).to_csv(tmp_path / "radiology_images.csv", index=False)
    nodes = pd.DataFrame({
        "patient_id": ["P1", "P1", "P2", "P2"], "node_id": ["a", "b", "c", "d"], "modality": "CT",
        "station": ["4sb", "7", "6", "8a"], "short_axis_mm": [9.0, 6.0, 7.0, 5.0],
        "long_axis_mm": [12.0, 10.0, 9.0, 6.0], "mask_label": [1, 2, 5, np.nan],
    })
    nodes.to_csv(tmp_path / "radiology_nodes.csv", index=False)
    pd.DataFrame({"patient_id": ["P1", "P2", "P3"], "age": [61, 70, 58], "sex": ["M", "F", "F"]}
                 ).to_csv(tmp_path / "clinical.csv", index=False)
    return tmp_path, nodes


def test_images_table_to_patient_features(tmp_path):
    root, nodes = _case_dir(tmp_path)
    table = read_images_table(root / "radiology_images.csv")
    assert table["modality"].tolist() == ["CT", "CT"] and all(p.startswith("/") for p in table["image_path"])
    rad = NodeRadiomics().fit()
    per_node = rad.node_features(root / "radiology_images.csv", nodes)
    assert per_node[["patient_id", "node_id", "label"]].values.tolist() == [["P1", "a", 1], ["P1", "b", 2],
                                                                            ["P2", "c", 5]]
    clinical = pd.read_csv(root / "clinical.csv", index_col="patient_id")
    X = rad.transform(root / "radiology_images.csv", nodes, patient_ids=clinical.index)
    assert list(X.columns) == list(rad.get_feature_names_out()) == list(rad.describe()["column"])
    assert all(c.startswith("rad_img_") for c in X.columns)
    assert X["rad_img_n_nodes"].tolist() == [2, 1, 0] and X["rad_img_missing"].tolist() == [0, 0, 1]
    assert X.loc["P1", "rad_img_short_axis_mm_max"] == pytest.approx(9.0, abs=1.0)
    assert X.loc["P1", "rad_img_volume_mm3_mean"] == pytest.approx(per_node["volume_mm3"][:2].mean())
    assert X.loc["P3"].drop(["rad_img_missing", "rad_img_n_nodes"]).isna().all()
    fused = clinical.join(NodeFeatures().fit_transform(nodes, patient_ids=clinical.index)).join(X)
    assert fused.shape[0] == 3 and fused.loc["P3", "rad_radiology_missing"] == 1


def test_mask_label_absent_from_node_table_names_the_mask(tmp_path):
    root, nodes = _case_dir(tmp_path)
    nodes = nodes[nodes["node_id"] != "b"]  # P1's label 2 has no node row any more
    with pytest.raises(RadiologyImageError, match=r"P1_mask.nii.gz: mask label\(s\) \[2\] of patient 'P1'"):
        NodeRadiomics().fit().node_features(root / "radiology_images.csv", nodes)
    nodes = nodes.assign(mask_label=nodes["mask_label"].replace(5, 7))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RadiologyWarning)
        X = NodeRadiomics(errors="warn").fit().transform(root / "radiology_images.csv", nodes)
    assert X["rad_img_missing"].tolist() == [1, 1] and len(X.attrs["failures"]) == 2


def test_images_table_errors_name_row_and_file(tmp_path):
    root, _ = _case_dir(tmp_path)
    bad = pd.read_csv(root / "radiology_images.csv")
    bad.loc[1, "mask_path"] = "img/nowhere.nii.gz"
    bad.loc[0, "modality"] = "XR"
    bad.to_csv(root / "bad.csv", index=False)
    with pytest.raises(RadiologyImageError) as info:
        read_images_table(root / "bad.csv")
    text = str(info.value)
    assert "bad.csv" in text and "row 3, column 'mask_path', value 'img/nowhere.nii.gz': file not found" in text
    assert "row 2, column 'modality', value 'XR': must be one of 'CT', 'MRI', 'PET', 'PET-CT'" in text


@pytest.mark.parametrize("text, message", [
    ("", r"empty\.csv: row 1: no header row"),  # pandas used to raise EmptyDataError
    ("patient_id;image_path;mask_path;modality\nP1;a.nii;b.nii;CT\n", r"empty\.csv: row 1: the header looks semicolon"),
])
def test_images_table_unreadable_csv_names_the_file(tmp_path, text, message):
    (tmp_path / "empty.csv").write_text(text)
    with pytest.raises(RadiologyImageError, match=message):
        read_images_table(tmp_path / "empty.csv")
    with pytest.raises(RadiologyImageError, match=message):
        NodeRadiomics().fit_transform(tmp_path / "empty.csv")


def test_image_path_naming_a_folder_is_explained(tmp_path):
    (tmp_path / "series").mkdir()
    with pytest.raises(RadiologyImageError, match=r"series: is a folder, not an image file; convert a DICOM"):
        NodeRadiomics().fit().measure(tmp_path / "series", tmp_path / "series")
    (tmp_path / "images.csv").write_text("patient_id,image_path,mask_path,modality\nP1,series,series,CT\n")
    with pytest.raises(RadiologyImageError, match=r"row 2, column 'image_path', value 'series': is a folder"):
        read_images_table(tmp_path / "images.csv")


def test_images_table_keeps_identifiers_as_text(tmp_path):
    root, _ = _case_dir(tmp_path)
    table = pd.read_csv(root / "radiology_images.csv", dtype=str)
    table["patient_id"] = "007"
    table.to_csv(root / "ids.csv", index=False)
    assert set(read_images_table(root / "ids.csv")["patient_id"]) == {"007"}


def test_cli_radiology_with_images(tmp_path):
    root, _ = _case_dir(tmp_path)
    out = tmp_path / "out" / "radiology.csv"
    result = CliRunner().invoke(app, ["radiology", str(root), "--out", str(out), "--images"])
    assert result.exit_code == 0, result.output
    assert "3 patients (2 with node rows)" in result.output
    table = pd.read_csv(out, index_col="patient_id")
    assert table.index.tolist() == ["P1", "P2", "P3"]
    assert table.loc["P1", "rad_n_category"] == "cN1" and pd.isna(table.loc["P3", "rad_n_category"])
    assert table["rad_img_n_nodes"].tolist() == [2, 1, 0]
    result = CliRunner().invoke(app, ["radiology", str(root), "--out", str(out), "--cancer", "lung"])
    assert result.exit_code == 2 and "cancer must be one of" in result.output


def test_pyradiomics_backend_matches_axes():
    pytest.importorskip("radiomics")
    image, mask = make_ct_volume((60, 60, 12), SPACING, [dict(center_mm=(21, 21, 18), axes_mm=(16, 10, 12))])
    ours = NodeRadiomics().fit().measure(image, mask)
    theirs = NodeRadiomics(backend="pyradiomics").fit().measure(image, mask)
    assert theirs.loc[0, "short_axis_mm"] == ours.loc[0, "short_axis_mm"]
    # Same voxels and discretisation: first-order statistics agree to rounding.
    for column in ("intensity_mean", "intensity_p90", "intensity_kurtosis", "intensity_entropy"):
        assert theirs.loc[0, column] == pytest.approx(ours.loc[0, column], rel=1e-6), column
    # GLCM on the isotropic grid: the two resamplers differ slightly at the node edge.
    for column in ("glcm_contrast", "glcm_homogeneity", "glcm_energy"):
        assert theirs.loc[0, column] == pytest.approx(ours.loc[0, column], rel=0.15), column


def test_plot_node_draws_both_axes(ct, measured):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lnmkit.radiology import plot_node

    fig = plot_node(*ct, 2)
    try:
        assert isinstance(fig, matplotlib.figure.Figure)
        ax = fig.axes[0]
        assert [line.get_label() for line in ax.get_lines()] == ["long axis", "short axis"]
        assert f"short {measured.loc[2, 'short_axis_mm']:.1f} mm" in ax.get_title()
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match=r"label 9 is not in mask .*labels present: \[1, 2, 3, 4\]"):
        plot_node(*ct, 9)


def test_schema_matches_reader():
    import json
    from pathlib import Path

    from lnmkit.radiology import IMAGE_MODALITIES
    from lnmkit.radiology._images import IMAGE_COLUMNS

    schema = json.loads((Path(__file__).resolve().parents[1] / "data_schemas" / "radiology_images.json").read_text())
    assert tuple(schema["x-required-columns"]) == IMAGE_COLUMNS
    assert tuple(schema["properties"]["modality"]["enum"]) == IMAGE_MODALITIES


def test_cli_images_without_images_table_fails_clearly(tmp_path):
    root, _ = _case_dir(tmp_path)
    (root / "radiology_images.csv").unlink()
    result = CliRunner().invoke(app, ["radiology", str(root), "--out", str(tmp_path / "x.csv"), "--images"])
    assert result.exit_code == 2 and "radiology_images.csv: file not found" in result.output
    assert not (tmp_path / "x.csv").exists()
