"""The documentation site: MkDocs configuration, generated pages, and the strict build (slow)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def _nav_pages(node):
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [p for v in node.values() for p in _nav_pages(v)]
    if isinstance(node, list):
        return [p for v in node for p in _nav_pages(v)]
    return []


def _mkdocs_config():
    # mkdocs.yml may use !!python/name tags in other setups; this one is plain YAML
    return yaml.safe_load((REPO / "mkdocs.yml").read_text())


def test_every_nav_page_exists_and_every_page_is_in_the_nav():
    pages = _nav_pages(_mkdocs_config()["nav"])
    missing = [p for p in pages if not (DOCS / p).is_file()]
    assert not missing, f"mkdocs.yml nav names missing pages: {missing}"
    on_disk = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    left_out = [p for p in on_disk if p not in pages]
    assert not left_out, f"pages not in the mkdocs.yml nav: {left_out}"


def test_index_links_every_guide_page():
    index = (DOCS / "index.md").read_text()
    linked = set(re.findall(r"\]\(([^)#]+\.md)", index))
    guides = [p.name for p in DOCS.glob("*.md") if p.name != "index.md"]
    assert not [g for g in guides if g not in linked], [g for g in guides if g not in linked]


def test_api_reference_covers_every_public_subpackage():
    import lnmkit

    root = Path(lnmkit.__file__).parent
    subpackages = sorted(p.parent.name for p in root.glob("*/__init__.py") if not p.parent.name.startswith("_"))
    documented = {p.stem for p in (DOCS / "api").glob("*.md")}
    assert not [s for s in subpackages if s not in documented], subpackages
    for name in documented - {"exceptions"}:
        assert f"::: lnmkit.{name}" in (DOCS / "api" / f"{name}.md").read_text()


def test_data_format_page_is_generated_from_the_schemas():
    from lnmkit.cohort._docs import render_data_format

    assert (DOCS / "data_format.md").read_text(encoding="utf-8") == render_data_format(), (
        "docs/data_format.md is out of date: run `python -m lnmkit.cohort._docs`")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_mkdocs_build_strict(tmp_path):
    if shutil.which("mkdocs", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("mkdocs is not installed (pip install 'lnmkit[docs]')")
    mkdocs = str(Path(sys.executable).parent / "mkdocs")
    result = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=REPO,
                            capture_output=True, text=True, env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin",
                                                                 "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert (tmp_path / "site" / "api" / "pipeline" / "index.html").is_file()
    html = (tmp_path / "site" / "api" / "pipeline" / "index.html").read_text()
    assert "run_pipeline" in html and "PipelineConfig" in html


def test_notebooks_share_one_numbering():
    names = sorted(p.name for p in (REPO / "notebooks").glob("*.ipynb"))
    assert names[0] == "00_quickstart.ipynb"
    numbers = []
    for name in names:
        match = re.fullmatch(r"(\d\d)_[a-z0-9_]+\.ipynb", name)
        assert match, f"notebooks/{name} is outside the NN_name.ipynb numbering"
        numbers.append(match.group(1))
    assert len(set(numbers)) == len(numbers), f"two notebooks share a number: {names}"


def test_pipeline_page_shows_the_current_default_configuration(tmp_path):
    from lnmkit.pipeline import default_config_text
    from lnmkit.synth import make_cohort

    root = make_cohort(tmp_path / "cohort", n_patients=8, slides=False, progress=False)
    (root / "slides.csv").write_text("slide_id,patient_id,path\n")
    text = default_config_text(root, output="run").replace(str(root), "cohort")
    assert f"```yaml\n{text}```" in (DOCS / "pipeline.md").read_text(), (
        "docs/pipeline.md shows an outdated `lnmkit init-config` output; paste the current one")
