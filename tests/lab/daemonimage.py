"""The daemon's container image: runbook as built from this checkout, on a Debian base.

No registry is reachable, so the image is built here as the lab's are (tests/lab/images.py):
the `daemon-base` recipe is a debootstrap root with Python, and this module adds runbook on
top with `docker build`. The project and its [all] extras become wheels on the host first
(`pip wheel`, through the machine's own pip settings: its local wheels and index), and the
image installs them with `pip install --no-index --find-links`, so its build reaches no
network. A multi-stage build leaves the wheels out of the final image.

The tag hashes the base image's tag, the Dockerfile and every file that goes into the wheel
(runner/, diagnostics/, playbooks/, pyproject.toml ...): a change to runbook's code makes a
new image, anything else reuses the one there is. (The versions of the dependencies are not
hashed, as the base's Debian packages are not: a rebuild takes what the index has then.)

    python -m tests.lab.daemonimage build   # build unless this checkout's image exists
    python -m tests.lab.daemonimage tag     # print the tag, build nothing

The image runs `runbook daemon --config /etc/runbook/daemon.yaml --host 0.0.0.0 --port
8080` as the unprivileged user 10001 (runbook), with RUNBOOK_HOME=/var/lib/runbook/state:
mount a writable volume on /var/lib/runbook (and on /tmp) when the root filesystem is
read-only; runbook makes state/ itself (0700).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.lab.images import ensure_image as ensure_lab_image
from tests.lab.images import image_tag as lab_image_tag

ROOT = Path(__file__).resolve().parents[2]
BASE = "daemon-base"  # a tests/lab/images.py recipe
REPOSITORY = "runbook/daemon"  # not runbook-lab/: `images build` prunes those it does not know
LATEST = f"{REPOSITORY}:latest"  # the newest build, as deploy/kubernetes/daemon.yaml names it
PORT = 8080
UID = 10001
# What the wheel is built from (pyproject.toml's [tool.hatch.build] and its metadata).
WHEEL_SOURCES = ("pyproject.toml", "README.md", "LICENSE", "runner", "diagnostics",
                 "playbooks")
VENV = "/opt/runbook"
HOME = "/var/lib/runbook"
_PATH = f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

DOCKERFILE = f"""\
FROM {{base}} AS build
COPY wheels /wheels
RUN python3 -m venv {VENV} \\
 && {VENV}/bin/pip install --quiet --no-index --find-links /wheels --no-cache-dir \\
      --disable-pip-version-check 'runbook-runner[all]'

FROM {{base}}
COPY --from=build {VENV} {VENV}
RUN groupadd --system --gid {UID} runbook \\
 && useradd --system --uid {UID} --gid runbook --home-dir {HOME} --no-create-home \\
      --shell /usr/sbin/nologin runbook \\
 && install -d -o runbook -g runbook -m 0700 {HOME}
ENV PATH={_PATH} RUNBOOK_HOME={HOME}/state HOME={HOME} PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1
USER {UID}:{UID}
WORKDIR {HOME}
EXPOSE {PORT}
LABEL org.opencontainers.image.title="runbook daemon"
ENTRYPOINT ["/usr/bin/tini", "--", "runbook", "daemon"]
CMD ["--config", "/etc/runbook/daemon.yaml", "--host", "0.0.0.0", "--port", "{PORT}"]
"""


def _log(msg: str) -> None:
    print(f"daemonimage: {msg}", file=sys.stderr, flush=True)


def _wheel_files() -> list[Path]:
    found: list[Path] = []
    for name in WHEEL_SOURCES:
        path = ROOT / name
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found += [p for p in path.rglob("*") if p.is_file() and "__pycache__" not in
                      p.parts and p.suffix != ".pyc"]
    return sorted(found)


def image_tag() -> str:
    """The tag of the image of this checkout (nothing is built)."""
    h = hashlib.sha256(f"{lab_image_tag(BASE)}\0{DOCKERFILE}\0".encode())
    for path in _wheel_files():
        h.update(f"{path.relative_to(ROOT)}\0".encode())
        h.update(path.read_bytes())
        h.update(b"\0")
    return f"{REPOSITORY}:{h.hexdigest()[:12]}"


def _exists(tag: str) -> bool:
    import docker

    try:
        docker.from_env().images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def ensure_image() -> str:
    """Build the image of this checkout unless it exists (the base too); its tag."""
    tag = image_tag()
    if _exists(tag):
        _log(f"{tag} is up to date")
        subprocess.run(["docker", "tag", tag, LATEST], check=True)
        return tag
    base = ensure_lab_image(BASE)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="runbook-daemon-", dir="/var/tmp") as context:
        wheels = Path(context, "wheels")
        _log(f"building {tag}: wheels of runbook-runner[all] from {ROOT}")
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
             "--wheel-dir", str(wheels), f"{ROOT}[all]"],
            capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"pip wheel failed:\n{proc.stderr[-3000:]}")
        wheeled = time.monotonic() - started
        Path(context, "Dockerfile").write_text(DOCKERFILE.format(base=base))
        # The legacy builder: it takes FROM from the local store, no registry involved.
        proc = subprocess.run(["docker", "build", "--quiet", "--tag", tag, context],
                              env={**os.environ, "DOCKER_BUILDKIT": "0"},
                              capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"docker build of {tag} failed:\n{proc.stdout}{proc.stderr}")
    _log(f"built {tag} in {time.monotonic() - started:.0f} s (wheels {wheeled:.0f} s)")
    subprocess.run(["docker", "tag", tag, LATEST], check=True)  # what the manifests name
    prune_stale_images(keep=tag)
    return tag


def prune_stale_images(keep: str) -> None:
    """Each change to the code leaves the previous image behind: remove those (an image a
    container still uses stays; Docker refuses)."""
    import docker

    client = docker.from_env()
    for image in client.images.list(name=REPOSITORY):
        for tag in image.tags:
            if tag.startswith(f"{REPOSITORY}:") and tag not in {keep, LATEST}:
                try:
                    client.images.remove(tag)
                    _log(f"removed stale {tag}")
                except docker.errors.APIError as e:
                    _log(f"kept stale {tag}: {e.explanation or e}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.lab.daemonimage", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("build", "tag"))
    args = parser.parse_args(argv)
    try:
        print(image_tag() if args.command == "tag" else ensure_image())
    except RuntimeError as e:
        _log(str(e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
