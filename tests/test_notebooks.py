"""The notebooks in ``notebooks/``: clean when committed, and they run top to bottom.

The fast checks (default run) read every notebook: valid nbformat v4, no stored
outputs, and code that imports only lnmkit's public API, the standard library and
installed dependencies of lnmkit. The slow tests (``make test-slow``) execute each
notebook with nbclient in a kernel of the interpreter running the tests.
"""

from __future__ import annotations

import ast
import json
import re
import sys
import tomllib
from functools import lru_cache
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))

# Notebooks with slower cells (training) get a longer per-cell timeout.
CELL_TIMEOUT_S = {"00_quickstart.ipynb": 1200, "08_mil_attention.ipynb": 600, "06_nomogram.ipynb": 900, "07_explain_one_patient.ipynb": 900,
                  "04_fusion_and_lnm_models.ipynb": 900}
DEFAULT_CELL_TIMEOUT_S = 300
# Code that draws a matplotlib figure: lnmkit's plot methods, plot_node, pyplot figures.
_DRAWS = re.compile(r"\.plot\(|\bplot_node\(|\bplt\.(subplots|figure|imshow)\(")


def _ids(paths):
    return [p.name for p in paths]


def _read(path):
    return nbformat.read(path, as_version=nbformat.NO_CONVERT)


# -- imports -------------------------------------------------------------------------------------

def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@lru_cache(maxsize=1)
def _allowed_distributions() -> frozenset[str]:
    """lnmkit's declared dependencies (with the test extra) and everything they require here."""
    from packaging.requirements import Requirement

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    todo = [Requirement(spec) for spec in
            [*project["dependencies"], *project.get("optional-dependencies", {}).get("test", [])]]
    seen = set()
    while todo:
        req = todo.pop()
        name = _normalise(req.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(req.name) or []
        except metadata.PackageNotFoundError:
            continue
        extras = [*req.extras, ""]
        for spec in map(Requirement, requires):
            # markers decide: the requested extras and this platform, as pip resolved them
            if spec.marker is None or any(spec.marker.evaluate({"extra": e}) for e in extras):
                todo.append(spec)
    return frozenset(seen)


def _code_of(cell_source: str) -> str:
    # IPython magics and shell escapes are not Python; blank them so ast can parse the rest
    lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in cell_source.splitlines()]
    return "\n".join(lines)


def _imports(nb):
    """(cell index, module, names) for every import statement of the notebook's code cells."""
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        tree = ast.parse(_code_of(cell.source), filename=f"cell {i}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [(i, alias.name, ()) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    found.append((i, "." * node.level + (node.module or ""), ()))
                else:
                    found.append((i, node.module, tuple(alias.name for alias in node.names)))
    return found


def _import_problems(nb) -> list[str]:
    problems = []
    packages = metadata.packages_distributions()
    allowed = _allowed_distributions()
    for i, module, names in _imports(nb):
        where = f"cell {i}: import of {module!r}"
        if module.startswith("."):
            problems.append(f"{where}: relative imports do not work in a notebook")
            continue
        parts = module.split(".")
        top = parts[0]
        if top == "lnmkit":
            private = [p for p in parts[1:] if p.startswith("_")]
            private += [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private:
                problems.append(f"{where}: private lnmkit name(s) {private}; use the public API")
            continue
        if top in sys.stdlib_module_names or top == "__future__":
            continue
        if find_spec(top) is None:
            problems.append(f"{where}: module not installed")
            continue
        dists = {_normalise(d) for d in packages.get(top, [])}
        if not dists & allowed:
            problems.append(f"{where}: from distribution(s) {sorted(dists) or '?'}, which lnmkit does not "
                            f"depend on; add it to pyproject.toml or drop the import")
        elif any(p.startswith("_") for p in parts[1:]):
            problems.append(f"{where}: private module of {top}")
    return problems


# -- fast checks ---------------------------------------------------------------------------------

def test_notebooks_are_present():
    names = {p.name for p in NOTEBOOKS}
    for expected in ("01_cohort_and_validation.ipynb", "02_slides_and_features.ipynb", "03_radiology.ipynb",
                     "04_fusion_and_lnm_models.ipynb",
                     "05_survival_models.ipynb", "06_nomogram.ipynb", "07_explain_one_patient.ipynb"):
        assert expected in names, f"notebooks/{expected} is missing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_is_valid_v4(path):
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert raw["nbformat"] == 4, f"{path.name}: nbformat {raw['nbformat']}, expected 4"
    nb = _read(path)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("language", "python") == "python"
    assert any(c.cell_type == "markdown" for c in nb.cells), f"{path.name}: no explanation (markdown cell)"
    assert any(c.cell_type == "code" and c.source.strip() for c in nb.cells), f"{path.name}: no code"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_has_no_outputs(path):
    nb = _read(path)
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, (f"{path.name}: cells {dirty} hold outputs or execution counts; clear them "
                       f"(JupyterLab: Edit > Clear Outputs of All Cells) before committing")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_imports_only_public_api(path):
    problems = _import_problems(_read(path))
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


def test_import_check_flags_private_and_unknown_imports():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("%matplotlib inline\nimport numpy as np\nfrom lnmkit.cohort import Cohort"),
        nbformat.v4.new_code_cell("from lnmkit._io import atomic_path\nimport lnmkit.cohort._validate"),
        nbformat.v4.new_code_cell("from lnmkit.cohort import _cohort\nimport surely_not_installed_xyz"),
        nbformat.v4.new_code_cell("from sklearn.utils._param_validation import Interval\nfrom . import x"),
    ])
    problems = _import_problems(nb)
    assert not any(p.startswith("cell 0") for p in problems), problems
    assert len(problems) == 6, problems
    assert "lnmkit._io" in problems[0] and "private lnmkit" in problems[0]
    assert "lnmkit.cohort._validate" in problems[1]
    assert "_cohort" in problems[2]
    assert "not installed" in problems[3]
    assert "private module of sklearn" in problems[4]
    assert "relative" in problems[5]


# -- execution (slow) ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """A ``python3`` kernelspec running this interpreter, found first through JUPYTER_PATH.

    Without it, ``python3`` may resolve to another Python (a system or user kernelspec)
    that lacks lnmkit, or a different lnmkit than the one under test.
    """
    data_dir = tmp_path_factory.mktemp("jupyter_data")
    spec_dir = data_dir / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (lnmkit tests)",
        "language": "python",
    }), encoding="utf-8")
    return data_dir


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_executes(path, kernel_env, tmp_path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_env))
    # the kernel then picks matplotlib's inline backend, as in JupyterLab (a backend set for
    # the test process, e.g. agg in CI, would hide every pyplot figure)
    monkeypatch.delenv("MPLBACKEND", raising=False)
    nb = _read(path)
    # the kernel must run this interpreter's environment (the lnmkit under test)
    nb.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.prefix)"))
    client = nbclient.NotebookClient(
        nb, timeout=CELL_TIMEOUT_S.get(path.name, DEFAULT_CELL_TIMEOUT_S), kernel_name="python3",
        startup_timeout=180, resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()   # raises CellExecutionError naming the failing cell and its traceback

    probe = nb.cells.pop()
    printed = "".join(o.text for o in probe.outputs if o.output_type == "stream" and o.name == "stdout")
    assert printed.strip() == sys.prefix, (
        f"the notebook kernel ran in another environment: {probe.outputs}")
    code_cells = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    errors = [(i, o.ename) for i, c in code_cells for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name}: error outputs in cells {errors}"
    # A figure that is drawn but never shown is a silent failure in JupyterLab: e.g. a
    # pyplot-free Figure assigned to a variable instead of returned or drawn into an ax.
    hidden = [i for i, c in code_cells if _DRAWS.search(c.source)
              and not any("image/png" in o.get("data", {}) for o in c.outputs)]
    assert not hidden, f"{path.name}: cells {hidden} draw a figure that is not displayed inline"
    # run from the repository's notebooks/ folder, a notebook must not litter it: outputs go
    # to a temporary folder
    left = sorted(p.name for p in tmp_path.iterdir())
    assert not left, f"{path.name} wrote {left} into its working directory; write under tempfile.mkdtemp()"
