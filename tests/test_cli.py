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
