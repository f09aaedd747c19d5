"""The layout rules of docs/ARCHITECTURE.md that a machine can check: no module over 400 lines, no function
or method over 60 (docstring included), and lossview reaching no private lossfmt name through a module it
imported (the import forms themselves are pinned in tests/cli/test_consistency.py)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lossfmt", "viewer")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _sources(*packages: str) -> list[tuple[str, str]]:
    """(path relative to the repository, text) of every module of the packages, subpackages included."""
    out = []
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            out.append((path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8")))
    return out


def _oversized(name: str, source: str) -> list[str]:
    """The module itself when it has more than MAX_MODULE_LINES lines, and each function or method (nested
    ones too) longer than MAX_FUNCTION_LINES from its `def` line to its last line, as readable entries."""
    found = []
    lines = len(source.splitlines())
    if lines > MAX_MODULE_LINES:
        found.append(f"{name}: {lines} lines (module limit {MAX_MODULE_LINES})")

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                qualname = f"{prefix}{child.name}"
                length = (child.end_lineno or child.lineno) - child.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    limit = f"function limit {MAX_FUNCTION_LINES}"
                    found.append(f"{name}:{child.lineno} {qualname}: {length} lines ({limit})")
                visit(child, f"{qualname}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return found


def _private_through_alias(source: str) -> list[str]:
    """`name._private` where `name` was bound by importing from lossfmt (`from lossfmt import transforms`,
    `import lossfmt.transforms as t`): a private name reached through a public module."""
    tree = ast.parse(source)
    aliases = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "lossfmt":
            aliases.update(a.asname or a.name for a in node.names)
        elif isinstance(node, ast.Import):
            aliases.update(a.asname for a in node.names if a.asname and a.name.split(".")[0] == "lossfmt")
    return sorted(
        ast.unparse(node)
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and isinstance(node.value, ast.Name)
        and node.value.id in aliases
    )


def test_no_module_over_400_lines_and_no_function_over_60():
    offenders = [entry for name, source in _sources(*PACKAGES) for entry in _oversized(name, source)]
    assert offenders == [], "split these along their seams (docs/ARCHITECTURE.md):\n" + "\n".join(offenders)


def test_the_size_check_names_a_long_module_and_each_long_function():
    body = "\n".join(f"    x{i} = {i}" for i in range(60))  # 60 lines of body + the def line: 61
    indented = body.replace("    ", "        ")
    method = f"class C:\n    def method(self):\n{indented}\n\n    def short(self):\n        pass\n"
    source = f"def long():\n{body}\n\n\n{method}"
    assert _oversized("m.py", source) == [
        "m.py:1 long: 61 lines (function limit 60)",
        "m.py:65 C.method: 61 lines (function limit 60)",
    ]
    assert _oversized("m.py", "x = 1\n" * 401) == ["m.py: 401 lines (module limit 400)"]
    assert _oversized("m.py", "x = 1\n" * 400 + "def f():\n    pass\n") != []  # 402 lines
    assert _oversized("m.py", "def f():\n" + body.replace("    x59 = 59", "") + "\n") == []


def test_the_check_scans_every_module_of_both_packages():
    names = {name for name, _ in _sources(*PACKAGES)}
    assert {"lossfmt/_writer.py", "lossfmt/integrations/tensorboard.py", "viewer/plot.py"} <= names


def test_viewer_code_reaches_no_private_lossfmt_name_through_a_module():
    offenders = {
        name: found for name, source in _sources("viewer") if (found := _private_through_alias(source))
    }
    assert offenders == {}


def test_the_alias_check_catches_a_private_name_behind_a_public_module():
    source = "from lossfmt import transforms\nimport lossfmt.dataset as ds\ntransforms._numpy(t)\nds._x\n"
    assert _private_through_alias(source) == ["ds._x", "transforms._numpy"]
    assert (
        _private_through_alias("from lossfmt import transforms\ntransforms.bucket\ntransforms.__all__\n")
        == []
    )
    assert _private_through_alias("import numpy as np\nnp._x\n") == []
