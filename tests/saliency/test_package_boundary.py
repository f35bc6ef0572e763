"""`saliency` stands alone: none of its modules imports `vidcap`, so it installs and runs without the captioner."""
import subprocess
import sys


def test_importing_every_saliency_module_loads_no_vidcap_module():
    script = ("import pkgutil, importlib, sys, saliency\n"
              "for module in pkgutil.walk_packages(saliency.__path__, 'saliency.'):\n"
              "    importlib.import_module(module.name)\n"
              "print(sorted(name for name in sys.modules if name == 'vidcap' or name.startswith('vidcap.')))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
