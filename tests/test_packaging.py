"""The installed command: pyproject.toml's [project] matches requirements.txt, ships what the tool
imports, and names the command line's entry point."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import tomllib

from conftest import ROOT

from todo_migration import __version__

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_dependencies_mirror_requirements_txt():
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    required = [x.split("#")[0].strip() for x in lines if x.split("#")[0].strip()]
    assert PYPROJECT["project"]["dependencies"] == required


def test_every_module_of_the_checkout_the_tool_imports_is_shipped():
    imported = set()
    for path in (ROOT / "todo_migration").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    from_checkout = {n for n in imported if (ROOT / f"{n}.py").exists() or (ROOT / n).is_dir()}
    assert "models" in from_checkout  # the app's models: the target schema
    shipped = PYPROJECT["tool"]["setuptools"]
    assert from_checkout <= {*shipped["packages"], *shipped["py-modules"]}


def test_the_console_script_is_the_command_line():
    module, _, name = PYPROJECT["project"]["scripts"]["migrate-sqlite-to-postgres"].partition(":")
    assert callable(getattr(importlib.import_module(module), name))


def test_python_dash_m_todo_migration():
    result = subprocess.run(
        [sys.executable, "-m", "todo_migration", "--version"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert __version__ in result.stdout
