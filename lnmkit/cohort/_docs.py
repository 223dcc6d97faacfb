"""Generate ``docs/data_format.md`` from the table schemas.

Run ``python -m lnmkit.cohort._docs`` to rewrite the page after editing a schema,
or ``python -m lnmkit.cohort._docs --check`` to exit 1 when it is out of date.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import lnmkit
from lnmkit._io import atomic_write_text
from lnmkit.cohort._schemas import load_schemas

__all__ = ["render_data_format", "default_output", "main"]

_HEADER = """\
# Data format

<!-- Generated from data_schemas/*.json by `python -m lnmkit.cohort._docs`: edit the schemas, not this page. -->

lnmkit reads a cohort from a folder of CSV tables. Each table is described by a
JSON Schema (draft 2020-12) in `data_schemas/`, shipped inside the package; this
page is generated from those schemas, and `lnmkit.Cohort` and `lnmkit validate`
check every file against them.

```
cohort/
  clinical.csv            required: one row per patient
  outcomes.csv            optional: nodal status, occult tumour cells, survival
  radiology_nodes.csv     optional: one row per lymph node seen on imaging
  slides.csv              optional: one row per whole-slide image
  radiology_images.csv    optional: CT/MR volumes and node masks
  slides/ ...             slide files, wherever slides.csv points
```

## Reading rules

* Files are comma-separated and UTF-8 encoded (a byte order mark, as Excel's
  "CSV UTF-8" writes it, is fine). The first row names the columns; column names
  are case-sensitive and their order does not matter.
* An empty cell is a missing value. Spaces around a value are removed. Words such
  as `NA`, `NaN` or `unknown` are *not* missing values: in a numeric column they are
  reported as errors, so that a typo is never silently turned into a gap.
* Identifiers (`patient_id`, `slide_id`, `node_id`) are read as text: `007` stays
  `007`.
* Yes/no columns hold `1` or `0`. Numbers use a dot as decimal separator and carry
  no unit: the unit is fixed by the column (see the tables below).
* Rows whose cells are all empty are ignored. A row with fewer cells than the
  header is read with the missing cells empty and draws a warning (a missing
  comma shifts every later value); a row with more non-empty cells is an error.
* Row numbers in messages are those a spreadsheet shows: the header is row 1, the
  first patient row 2 (for files without line breaks inside quoted cells this is the
  line number).
* Columns a table does not define are kept, as numbers when every value is a
  number (and none has a leading zero) and as text otherwise. In `clinical.csv`
  they are expected (extra covariates); in the other tables each draws a warning,
  to catch misspelt column names. A column whose name is close to a defined one
  (`tumor_size_mm` for `tumour_size_mm`) always draws a warning.
* Optional columns a file lacks are added to the loaded table, all missing, so
  code can rely on every defined column being there.

## Loaded types

| column type | pandas dtype |
|---|---|
| text with allowed values | `category` (categories in the order listed below) |
| other text | `object` (str) |
| number | `float64` |
| integer, 0/1 | `Int64` (nullable) |

One-row-per-patient tables are indexed by `patient_id`; slides are indexed by
`slide_id`; radiology nodes keep `patient_id` as a column.
"""

_VALIDATION = """\
## Validation

`Cohort.from_dir`, `Cohort.from_files`, `validate_cohort` and `lnmkit validate`
check everything at once and report every problem, each naming the file, the row,
the column and the offending value, for example:

```
error: cohort/clinical.csv, row 14, column 'age', value '-3': must be >= 0 years
error: cohort/outcomes.csv, row 9, column 'positive_nodes', value '3': pN0 means no metastatic node: positive_nodes must be 0 (pn_status='pN0', positive_nodes=3)
error: cohort/slides.csv, row 4, column 'path', value 'slides/S04.svs': file not found: /data/cohort/slides/S04.svs
warning: cohort/outcomes.csv, row 22, column 'otc', value '1': otc is only defined for pN0 patients; ...
```

Checked in each table, as declared by its schema:

* the file exists and is readable UTF-8 CSV; every required column is in the
  header; no column name appears twice; no row has more cells than the header
  (fewer cells: a warning);
* each cell has its column's type (number, whole number, text), is one of the
  allowed values, lies in the allowed range, matches the column's pattern;
* cells that may not be empty are not empty; columns that go together
  (a survival time and its event) are both given or both empty;
* the row rules and column comparisons listed with each table below;
* the primary key is unique (one row per patient, one `slide_id` per slide, one
  `node_id` per node within a patient);
* slide files (and any other path column) exist and are files, not folders, relative
  to the table's folder; `check_files=False` (`lnmkit validate --no-check-files`)
  skips this for work that needs only the tables, e.g. MIL on feature bags on a
  machine without the slides;
* `validate_cohort` and `lnmkit validate` (unless `--no-check-files`) also open
  every slide, several at a time: OpenSlide reads the header, the level-0 size is
  plausible (at most 1,000,000 px a side), the microns per pixel are known (file
  or `mpp` column) and plausible, and a small region at the centre of every
  pyramid level decodes. Zero-byte, truncated, random-bytes and non-slide files
  (a PNG renamed `.svs`, a CSV), damaged tiles and absurd image sizes are
  reported on the slide's row (`cannot be used as a slide: ...`) instead of
  failing later in `lnmkit features`. `Cohort.from_dir` does not open slides
  (feature extraction records a bad slide and goes on).

The same engine checks a table given as a DataFrame instead of a file
(`validate_nodes`, `read_images_table`, the MIL targets): the messages are the
same, with rows numbered as a spreadsheet of that DataFrame would show them.

Checked across tables: every `patient_id` of another table is in `clinical.csv`.
Patients of `clinical.csv` without outcome, node or slide rows are fine.

Errors stop loading (`lnmkit.exceptions.CohortValidationError`, whose `.problems`
lists them all). Warnings flag data that is usable but probably wrong; the data is
loaded unchanged, a single `lnmkit.exceptions.CohortValidationWarning` is emitted
and the warnings are kept in `Cohort.problems`. In particular an `otc` value of a
pN+ patient is a warning, not an error: occult tumour cells are only defined for
pN0 patients, the value is kept as recorded, and occult tumour cell models use
pN0 patients only.

## Python API

```python
from lnmkit import Cohort
from lnmkit.cohort import validate_cohort, problems_frame

cohort = Cohort.from_dir("cohort/")        # or Cohort.from_files(clinical=..., outcomes=..., ...)
cohort.clinical                            # DataFrame indexed by patient_id
cohort.outcomes                            # DataFrame indexed by patient_id
cohort.radiology_nodes                     # DataFrame, patient_id column
cohort.slides                              # DataFrame indexed by slide_id, absolute paths
cohort.survival("os")                      # scikit-survival structured array (event, time)
cohort.survival("rfs", patients=X.index)   # aligned with your feature table
cohort.overview()                          # headline counts (patients, slides, pN+ rate, events)
cohort.summary()                           # missingness per table and column
cohort.subset(ids)                         # the same cohort restricted to some patients

problems = validate_cohort("cohort/")      # list of Problem, never raises
problems_frame(problems)                   # the same as a DataFrame
```

`Cohort.survival` raises `CohortValidationError` naming every requested patient
without an outcome row or with an empty time or event; select patients with a
known outcome first, e.g.
`cohort.outcomes.dropna(subset=["os_months", "os_event"]).index`.
A table that was not given is an empty DataFrame with the defined columns.

## Command line

```
lnmkit validate cohort/
lnmkit validate cohort/ --no-check-files   # the tables only, without the slide files
```

prints every problem, one per line, and exits with status 1 if any is an error;
otherwise it prints any warnings and a one-line summary
(`valid: 120 patients, 240 slides, ...`) and exits with status 0.
"""

_DIALECT = """\
## Schema files

Each `data_schemas/<table>.json` is a JSON Schema (draft 2020-12) for one row of
the table written as a JSON object: one property per column, an empty cell being an
absent property. A row schema can therefore be checked with any JSON Schema
validator. lnmkit evaluates the schemas itself, vectorised over whole columns, and
accepts only the keywords it evaluates, so no declared constraint goes unchecked:

* on a column: `type` (`string`, `number` or `integer`), `enum`, `const`,
  `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`, `multipleOf`,
  `pattern`, `minLength`, `maxLength`, `not`, `allOf`, `anyOf`, `oneOf`;
* on a row: `properties`, `required` (cells that may not be empty),
  `dependentRequired`, `allOf`, `anyOf`, `oneOf`, `not`, `if`/`then`/`else`.

lnmkit's own keywords:

| keyword | where | meaning |
|---|---|---|
| `x-file-name` | top | standard file name of the table in a cohort folder |
| `x-row` | top | what one row is (documentation) |
| `x-index` | top | column that becomes the DataFrame index (must be the primary key) |
| `x-primary-key` | top | columns whose values together are unique per row |
| `x-required-columns` | top | columns the header must contain |
| `x-extra-columns` | top | `keep` or `warn`: what to do with columns the schema does not define |
| `x-min-rows` | top | fewest data rows allowed |
| `x-foreign-keys` | top | `[{"columns": [...], "table": "clinical"}]`: values must be keys of that table |
| `x-column-comparisons` | top | `[{"left", "op", "right", "description"}]`: numeric comparison between two columns of a row |
| `x-unit` | column | unit of a numeric column |
| `x-file-path` | column | `true`: a path relative to the table's folder that must name an existing file (not a folder); loaded as an absolute path |
| `x-severity` | column, rule, comparison, foreign key | `error` (default) or `warning` |
| `x-column` | rule | column a violated row rule is reported on |

Each entry of the top-level `allOf` is a row rule with a `description` (the
message shown when a row breaks it). A new `*.json` file in `data_schemas/` is a
new table: `Cohort` loads `<table>.csv` with it, and this page lists it after
`python -m lnmkit.cohort._docs`.
"""


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _num(x) -> str:
    return str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)


def _allowed(spec) -> str:
    parts = []
    if "enum" in spec:
        parts.append(", ".join(f"`{v}`" for v in spec["enum"]))
    if "const" in spec:
        parts.append(f"`{spec['const']}`")
    bounds = [(">=", "minimum"), (">", "exclusiveMinimum"), ("<=", "maximum"), ("<", "exclusiveMaximum")]
    for op, key in bounds:
        if key in spec:
            parts.append(f"{op} {_num(spec[key])}")
    if "multipleOf" in spec:
        parts.append(f"multiple of {_num(spec['multipleOf'])}")
    if "pattern" in spec:
        parts.append(f"pattern `{spec['pattern']}`")
    if "maxLength" in spec:
        parts.append(f"at most {spec['maxLength']} characters")
    if spec.get("x-file-path"):
        parts.append("existing file")
    return "; ".join(parts)


def _type(schema, column) -> str:
    spec = schema.columns[column]
    dtype = schema.dtype(column)
    shown = {"string": "text", "number": "number", "integer": "integer"}[spec["type"]]
    loaded = "category" if str(dtype) == "category" else ("object" if dtype is object else str(dtype))
    return f"{shown} (`{loaded}`)"


def _required(schema, column) -> str:
    if column in schema.required_values:
        return "yes, non-empty"
    if column in schema.required_columns:
        return "column required, may be empty"
    return "no"


def _table_section(schema, schemas) -> list[str]:
    lines = [f"### `{schema.file_name}`", "", schema.raw.get("description", ""), ""]
    facts = []
    if schema.raw.get("x-row"):
        facts.append(f"* One row per {schema.raw['x-row']}.")
    if schema.primary_key:
        facts.append(f"* Unique per row: {', '.join(f'`{c}`' for c in schema.primary_key)}.")
    if schema.index:
        facts.append(f"* Loaded indexed by `{schema.index}`.")
    for fk in schema.foreign_keys:
        facts.append(f"* Every {', '.join(f'`{c}`' for c in fk['columns'])} must be in "
                     f"`{schemas[fk['table']].file_name}`.")
    if schema.min_rows:
        facts.append(f"* At least {schema.min_rows} data row(s).")
    facts.append("* Columns not defined here: " + ("kept." if schema.extra_columns == "keep"
                                                   else "kept, with a warning."))
    lines += facts + [""]
    lines += ["| column | required | type (loaded as) | unit | allowed values | description |",
              "|---|---|---|---|---|---|"]
    for column, spec in schema.columns.items():
        lines.append("| " + " | ".join(_cell(x) for x in [
            f"`{column}`", _required(schema, column), _type(schema, column), spec.get("x-unit", ""),
            _allowed(spec), spec["description"],
        ]) + " |")
    checks = []
    for column, needed in schema.dependent_required.items():
        checks.append(f"* error: when `{column}` is given, {', '.join(f'`{c}`' for c in needed)} "
                      "must be given too.")
    for cmp in schema.comparisons:
        checks.append(f"* {cmp.get('x-severity', 'error')}: `{cmp['left']} {cmp['op']} {cmp['right']}` "
                      f"when both are given. {cmp['description']}")
    for rule in schema.rules:
        checks.append(f"* {rule.get('x-severity', 'error')} (reported on `{rule['x-column']}`): "
                      f"{rule['description']}")
    if checks:
        lines += ["", "Checks across columns of a row:", ""] + checks
    return lines + [""]


def render_data_format(schemas=None) -> str:
    """Markdown text of ``docs/data_format.md``.

    Parameters
    ----------
    schemas : dict of str to TableSchema, optional
        Defaults to the packaged schemas.

    Returns
    -------
    str
    """
    schemas = schemas if schemas is not None else load_schemas()
    lines = [_HEADER, "## Tables", ""]
    for schema in schemas.values():
        lines += _table_section(schema, schemas)
    text = "\n".join(lines) + "\n" + _VALIDATION + "\n" + _DIALECT
    return text.rstrip("\n") + "\n"


def default_output() -> Path:
    """``docs/data_format.md`` of the source checkout.

    Returns
    -------
    pathlib.Path
    """
    return Path(lnmkit.__file__).resolve().parents[1] / "docs" / "data_format.md"


def main(argv=None) -> int:
    """Rewrite (or with ``--check``, compare) the data format page.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments.

    Returns
    -------
    int
        Exit status: 1 with ``--check`` when the page is out of date, else 0.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=default_output(), help="Markdown file to write.")
    parser.add_argument("--check", action="store_true", help="Only report whether the file is up to date.")
    args = parser.parse_args(argv)
    text = render_data_format()
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is out of date; run python -m lnmkit.cohort._docs", file=sys.stderr)
            return 1
        return 0
    atomic_write_text(args.out, text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
