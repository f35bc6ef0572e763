"""What a user installs: the wheel holds the two packages and nothing of the test suite's tooling."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_TOOLS = ("faults", "corruption", "captioner_runs")  # tests/support/: kill-anywhere harness, corruption battery


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory) -> list[str]:
    """The file names inside a wheel built from a copy of the checkout (the checkout itself is left untouched)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in ("saliency", "vidcap"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                           "--wheel-dir", str(out), str(source)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    wheel, = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def test_the_wheel_holds_only_the_two_packages(wheel_files):
    tops = {name.split("/")[0] for name in wheel_files if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"saliency", "vidcap"}


def test_the_wheel_holds_no_test_tooling(wheel_files):
    modules = [Path(name).stem for name in wheel_files if name.endswith(".py")]
    assert not [name for name in modules if name in TEST_TOOLS or name.startswith("test_") or name == "conftest"]


def test_the_wheel_holds_every_module_and_the_web_page(wheel_files):
    expected = {path.relative_to(ROOT).as_posix() for package in ("saliency", "vidcap")
                for path in (ROOT / package).rglob("*.py")}
    assert expected <= set(wheel_files)
    assert "vidcap/app/static/index.html" in wheel_files
