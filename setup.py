"""What pyproject.toml cannot say statically; every other setting is there.

- Packages: the viewer's folder is `viewer/` but it installs as `lossview`, which a static
  `packages.find` cannot express. `find_packages` still discovers every subpackage of both, so a new
  one (like `lossfmt.integrations`) is never left out of the wheel by a hand-written list.
- The long description: README.md's introduction, without its screenshot. The README links the image
  by a path relative to the repository, which a package index page cannot resolve, and the repository's
  absolute URL is not fixed; the sections after the introduction are about the repository (make, docs
  links) rather than the installed package.
- The extension: `lossfmt._fastadd`, the compiled add() (lossfmt/_compiled.py). Optional: where it cannot
  be built (no C compiler, a big-endian machine) the package installs without it and add() is pure Python.
"""

from pathlib import Path

from setuptools import Extension, find_packages, setup


def long_description() -> str:
    """README.md up to its first `## ` section, minus image lines."""
    text = (Path(__file__).parent / "README.md").read_text(encoding="utf-8")
    intro = text.split("\n## ", 1)[0]
    kept = [line for line in intro.splitlines() if not line.lstrip().startswith("![")]
    return "\n".join(kept).replace("\n\n\n", "\n\n").strip() + "\n"


setup(
    packages=find_packages(include=["lossfmt", "lossfmt.*"])
    + ["lossview" + name.removeprefix("viewer") for name in find_packages(include=["viewer", "viewer.*"])],
    long_description=long_description(),
    long_description_content_type="text/markdown",
    ext_modules=[Extension("lossfmt._fastadd", ["lossfmt/_fastadd.c"], optional=True)],
)
