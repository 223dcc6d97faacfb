from typer.testing import CliRunner

import lnmkit
from lnmkit.cli import app

runner = CliRunner()


def test_version_prints_package_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"lnmkit {lnmkit.__version__}"


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_atomic_path_names_what_is_in_the_way(tmp_path):
    import pytest

    from lnmkit._io import atomic_write_text

    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"file is a file, not a folder.*sub[/\\]out\.csv"):
        atomic_write_text(tmp_path / "file" / "sub" / "out.csv", "a")
    with pytest.raises(IsADirectoryError, match="is a folder; give the name of a file"):
        atomic_write_text(tmp_path, "a")
    atomic_write_text(tmp_path / "new" / "out.csv", "a")
    assert (tmp_path / "new" / "out.csv").read_text() == "a"
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["out.csv"]


def test_validate_tables_only(synthetic_cohort_dir, tmp_path):
    import shutil

    cohort = shutil.copytree(synthetic_cohort_dir, tmp_path / "cohort",
                             ignore=shutil.ignore_patterns("*.svs", "*.tiff", "*.tif"))
    runner = CliRunner()
    missing = runner.invoke(app, ["validate", str(cohort)])
    assert missing.exit_code == 1 and "file not found" in missing.output
    tables_only = runner.invoke(app, ["validate", str(cohort), "--no-check-files"])
    assert tables_only.exit_code == 0, tables_only.output
    assert tables_only.output.startswith("valid:")
