"""The ``lnmkit`` command line.

Each command is a thin wrapper over the public Python API: it parses paths and
options, calls one library function and prints what that function returns.
"""

from __future__ import annotations

from typing import Optional

import typer

from lnmkit._version import __version__

app = typer.Typer(
    name="lnmkit",
    help="Lymph node metastasis and prognosis from slides, clinical and radiology tables.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool):
    if value:
        typer.echo(f"lnmkit {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
):
    """Lymph node metastasis and prognosis from slides, clinical and radiology tables."""


def main():
    """Entry point of the ``lnmkit`` console script."""
    app()


if __name__ == "__main__":
    main()
