"""The package as users get it: what the wheel holds, and that CI's suite really runs against it.

`make test` (and so CI) installs the built wheel into its own venv and sets LOSSFMT_TEST_INSTALLED=1;
the tests marked for that run fail if `lossfmt` or `lossview` came from the source tree instead."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALLED = os.environ.get("LOSSFMT_TEST_INSTALLED") == "1"
installed_only = pytest.mark.skipif(
    not INSTALLED, reason="runs against the installed wheel (make test / CI set LOSSFMT_TEST_INSTALLED=1)"
)
# Folders of the checkout that are never part of the wheel.
NOT_SHIPPED = (".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".hypothesis", "runs", "*.so")


def _source_files() -> set[str]:
    """Every module file of the source tree at its installed path (viewer/ installs as lossview/)."""
    files = set()
    for folder, package in (("lossfmt", "lossfmt"), ("viewer", "lossview")):
        files |= {
            f"{package}/{p.relative_to(ROOT / folder).as_posix()}" for p in (ROOT / folder).rglob("*.py")
        }
    return files


INTEGRATIONS = sorted(
    f"lossfmt.integrations.{p.stem}"
    for p in (ROOT / "lossfmt" / "integrations").glob("*.py")
    if p.stem != "__init__"
)


def _site_dirs() -> list[Path]:
    return [Path(sysconfig.get_paths()[key]).resolve() for key in ("purelib", "platlib")]


def _in_site_packages(path: str | None) -> bool:
    assert path is not None
    resolved = Path(path).resolve()
    from_source = any(ROOT / folder in resolved.parents for folder in ("lossfmt", "viewer"))
    return not from_source and any(site in resolved.parents for site in _site_dirs())


def _build_wheel(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str] | None = None) -> Path:
    """The wheel pip builds from a copy of the checkout (build isolation, as a user's `pip install .`)."""
    src = tmp_path_factory.mktemp("src") / "lossfmt"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*NOT_SHIPPED))
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
        env=None if env is None else {**os.environ, **env},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (built,) = out.glob("lossfmt-*.whl")
    return built


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    return zipfile.ZipFile(_build_wheel(tmp_path_factory))


def _c_compiler() -> str | None:
    return shutil.which((sysconfig.get_config_var("CC") or "cc").split()[0])


def test_wheel_holds_the_compiled_add_where_a_c_compiler_exists(wheel: zipfile.ZipFile) -> None:
    compiled = [n for n in wheel.namelist() if re.fullmatch(r"lossfmt/_fastadd\.[^/]+\.so", n)]
    assert bool(compiled) == (_c_compiler() is not None), (compiled, _c_compiler())


def test_a_build_without_a_c_compiler_installs_the_pure_python_add(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """The extension is optional: with no working compiler (CC=false) pip still builds a wheel, and the
    installed package writes and reads with the pure-Python add()."""
    built = _build_wheel(tmp_path_factory, {"CC": "false"})
    assert not [n for n in zipfile.ZipFile(built).namelist() if n.endswith(".so")]
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(built)],
        check=True,
        timeout=300,
    )
    code = (
        # An editable dev install's finder would serve lossfmt's submodules from the checkout: drop it.
        "import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f)];"
        "import lossfmt, lossfmt._compiled as c; assert lossfmt.__file__.startswith(sys.argv[1]);"
        "w = lossfmt.LossWriter(sys.argv[2]); w.add(1, 0.5, 'a', count=2); w.close();"
        "print(c.COMPILED, lossfmt.read(sys.argv[2]).num_rows)"
    )
    env = {k: v for k, v in os.environ.items() if k != "LOSSFMT_PURE_PYTHON"}
    env["PYTHONPATH"] = str(target)
    out = subprocess.run(
        [sys.executable, "-c", code, str(target), str(tmp_path / "run.arrow")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["False", "1"]


def test_wheel_holds_every_module_of_both_packages(wheel: zipfile.ZipFile) -> None:
    shipped = {name for name in wheel.namelist() if name.endswith(".py")}
    assert shipped == _source_files()
    assert "lossfmt/integrations/keras.py" in shipped  # the subpackage a hand-written list once left out


def test_wheel_carries_the_license_and_nothing_from_tests(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    licenses = [n for n in names if re.fullmatch(r"lossfmt-[^/]+\.dist-info/licenses/LICENSE", n)]
    assert licenses, names
    assert wheel.read(licenses[0]) == (ROOT / "LICENSE").read_bytes()
    tops = {n.split("/", 1)[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"lossfmt", "lossview"}
    top_level = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
    assert wheel.read(top_level).decode().split() == ["lossfmt", "lossview"]


def test_long_description_has_no_link_a_package_index_cannot_resolve(wheel: zipfile.ZipFile) -> None:
    metadata = wheel.read(next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    header, _, description = metadata.partition("\n\n")
    assert "Description-Content-Type: text/markdown" in header
    assert "log.add(step, loss" in description  # the README's introduction, its first example included
    links = re.findall(r"\]\(([^)]*)\)", description)
    assert all(link.startswith(("https://", "http://")) for link in links), links
    assert "docs/images/" not in description


def test_wheel_declares_the_runtime_dependencies(wheel: zipfile.ZipFile) -> None:
    metadata = wheel.read(next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    requires = {ln.split(": ", 1)[1] for ln in metadata.splitlines() if ln.startswith("Requires-Dist: ")}
    # matplotlib 3.10 brought FillBetweenPolyCollection.set_data, which the --band plots call.
    assert {"matplotlib>=3.10.7", "google-crc32c>=1.5", "pyarrow>=17", "numpy>=1.24"} <= requires


def test_floor_run_pins_exactly_the_declared_floors() -> None:
    """`make test-floor` installs FLOOR_PINS; each pin must be the floor pyproject.toml declares."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+; the floor itself runs on any
    from packaging.version import Version

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {}
    for spec in [*project["dependencies"], *project["optional-dependencies"]["pandas"]]:
        name, floor = spec.split("#")[0].split(">=")
        declared[name.strip()] = Version(floor)
    line = next(ln for ln in (ROOT / "Makefile").read_text().splitlines() if ln.startswith("FLOOR_PINS"))
    pins = dict(pin.split("==") for pin in line.split(":=", 1)[1].split())
    for name, floor in declared.items():
        assert name in pins, f"make test-floor does not pin {name}"
        assert Version(pins[name]) == floor, f"{name}: floor {floor}, make test-floor installs {pins[name]}"


@installed_only
def test_suite_imports_lossfmt_and_lossview_from_the_installed_wheel() -> None:
    import lossfmt
    import lossview

    for module in (lossfmt, lossview):
        assert _in_site_packages(module.__file__), f"{module.__name__} imported from {module.__file__}"
    direct_url = importlib.metadata.distribution("lossfmt").read_text("direct_url.json") or ""
    assert '"editable": true' not in direct_url, direct_url


@installed_only
def test_subprocesses_of_the_suite_see_the_installed_wheel_too(tmp_path: Path) -> None:
    """The CLI tests run `python -m lossview` in the suite's working directory: never the checkout."""
    cwd = Path.cwd().resolve()
    assert cwd != ROOT and ROOT not in cwd.parents, cwd
    code = "import lossfmt, lossview; print(lossfmt.__file__); print(lossview.__file__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    for path in out.stdout.split():
        assert _in_site_packages(path), path
    script = Path(sysconfig.get_paths()["scripts"]) / "lossview"
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "usage: lossview" in proc.stdout


@installed_only
@pytest.mark.parametrize("module", INTEGRATIONS)
def test_every_integration_imports_from_the_installed_wheel(
    module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if "KERAS_BACKEND" not in os.environ:
        monkeypatch.setenv("KERAS_BACKEND", "torch")  # the backend the suite installs (Keras defaults to TF)
    spec = importlib.util.find_spec(module)
    assert spec is not None, f"{module} is not installed"
    assert _in_site_packages(spec.origin), spec.origin
    try:
        importlib.import_module(module)
    except ImportError as exc:
        missing = _missing_framework(exc)
        if missing is None:
            raise
        pytest.skip(f"{module} needs {missing}, not installed in this venv (make test installs it)")


def _missing_framework(exc: BaseException | None) -> str | None:
    """The third-party module whose absence caused `exc` (an integration may re-raise it with advice)."""
    while exc is not None:
        if isinstance(exc, ModuleNotFoundError) and exc.name:
            return None if exc.name.split(".")[0] in ("lossfmt", "lossview") else exc.name
        exc = exc.__cause__
    return None


@installed_only
def test_installed_distribution_has_the_license_and_no_tests_package() -> None:
    dist = importlib.metadata.distribution("lossfmt")
    files = [str(f) for f in dist.files or []]
    assert any(re.fullmatch(r"lossfmt-[^/]+\.dist-info/licenses/LICENSE", f) for f in files), files
    assert not [f for f in files if f.split("/", 1)[0] in ("tests", "bench", "examples")]
    assert importlib.util.find_spec("tests") is None
