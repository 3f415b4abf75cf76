"""Structure of the committed notebooks, and proof that the environment's
profile wins over any parameter cell (CI runs them with REPLICATE_PROFILE=smoke
through nbval; see the Makefile's `test` target)."""
import json
import os
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*/*.ipynb"))
ids = [str(p.relative_to(ROOT / "notebooks")) for p in NOTEBOOKS]


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found under notebooks/"


def _cells(path):
    return nbformat.read(path, as_version=4).cells


def _param_index(cells):
    tagged = [i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "a notebook needs exactly one cell tagged 'parameters'"
    return tagged[0]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_parameters_cell_comes_first_and_starts_with_profile(path):
    cells = _cells(path)
    i = _param_index(cells)
    assert all(c.cell_type == "markdown" for c in cells[:i]), "title and claim come before the parameters"
    src = cells[i].source
    first = [l for l in src.splitlines() if re.match(r"^[A-Za-z_]\w*\s*(:[^=]*)?=", l)][0]
    assert first.startswith("profile: str = os.environ.get(\"REPLICATE_PROFILE\", \"cpu\")")
    # every parameter is annotated, so `papermill --help-notebook` shows its type
    untyped = [l for l in src.splitlines() if re.match(r"^[A-Za-z_]\w*\s*=", l)]
    assert not untyped, f"parameters without a type annotation: {untyped}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_committed_outputs_are_clean_cpu_outputs(path):
    assert path.stat().st_size <= 2 * 1024 * 1024, "notebook larger than 2 MB"
    cells = _cells(path)
    text = json.dumps([c.get("outputs", []) for c in cells if c.cell_type == "code"])
    assert all(c.execution_count is not None for c in cells if c.cell_type == "code"), "not fully executed"
    assert '"output_type": "error"' not in text
    assert "profile: cpu" in text, "committed outputs must come from the cpu profile"
    for bad in ("/work/", "/root/", "/home/", "/tmp/", "site-packages", "it/s]", "\\r"):
        assert bad not in text, f"output contains {bad!r}"


def _prefix_notebook(path, injected: str | None):
    """The notebook's cells up to the derived-settings cell, plus an optional
    papermill-style injected-parameters cell, plus a probe printing the profile."""
    nb = nbformat.read(path, as_version=4)
    i = _param_index(nb.cells)
    cells = nb.cells[: i + 1]
    if injected is not None:
        cells.append(nbformat.v4.new_code_cell(injected, metadata={"tags": ["injected-parameters"]}))
    cells.append(nb.cells[i + 1])  # derived settings
    cells.append(nbformat.v4.new_code_cell('print("RESOLVED-PROFILE", profile)'))
    for c in cells:
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
    nb.cells = cells
    return nb


def _execute(nb, env_profile):
    from nbclient import NotebookClient

    old = os.environ.get("REPLICATE_PROFILE")
    if env_profile is None:
        os.environ.pop("REPLICATE_PROFILE", None)
    else:
        os.environ["REPLICATE_PROFILE"] = env_profile
    try:
        NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    finally:
        if old is None:
            os.environ.pop("REPLICATE_PROFILE", None)
        else:
            os.environ["REPLICATE_PROFILE"] = old
    return "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_environment_profile_beats_an_injected_parameter(path):
    out = _execute(_prefix_notebook(path, 'profile = "cpu"'), "smoke")
    assert "RESOLVED-PROFILE smoke" in out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_wrong_profile_parameter_gives_a_one_line_error(path):
    from nbclient.exceptions import CellExecutionError

    with pytest.raises(CellExecutionError) as err:
        _execute(_prefix_notebook(path, 'profile = "fast"'), None)
    assert "unknown profile 'fast'; valid: smoke, cpu, paper" in str(err.value)


def test_styled_tables_render_the_same_on_every_execution():
    import pandas as pd
    from IPython.core.interactiveshell import InteractiveShell

    from replicate import notebook as nb

    def render():
        shell = InteractiveShell.instance()
        try:
            nb._stable_table_output()
            styler = pd.DataFrame({"a": [1.5, 2.0]}).style.format("{:.1f}")
            return [shell.display_formatter.format(styler)[0] for _ in range(2)]
        finally:
            InteractiveShell.clear_instance()

    first, again = render(), render()
    assert first == again
    assert "T_t1_" in first[0]["text/html"] and "T_t2_" in first[1]["text/html"]
    assert "Styler at" not in first[0]["text/plain"] and "1.5" in first[0]["text/plain"]
