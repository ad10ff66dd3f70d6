"""Lab images, built locally from Debian packages and cached by a hash of their recipe.

No image registry is reachable, so each image is a `debootstrap` root imported with
`docker import`. The tag carries the recipe hash: an image is rebuilt only when its
recipe changes.

    python -m tests.lab.images build [NAME...]   # build the missing ones (all by default)
    python -m tests.lab.images tag NAME          # print the tag, build nothing
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# Bump when the build steps below change what ends up in an image.
BUILDER_VERSION = "1"
SUITE = "bookworm"
# The mirror apt uses on this machine (/etc/apt/sources.list.d); not part of the hash.
MIRROR = os.environ.get("RUNBOOK_LAB_MIRROR", "http://deb.debian.org/debian")
# Deleted from every root: nothing in the lab reads them, and they are big.
TRIM = (
    "var/cache/apt",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/locale",
    "usr/share/man",
    "usr/share/info",
)
ENTRYPOINT = "/usr/local/bin/lab-entrypoint"
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Recipe:
    packages: tuple[str, ...]
    entrypoint: str  # a file next to this module, installed as ENTRYPOINT
    changes: tuple[str, ...] = ()  # more `docker import --change` instructions
    remove: tuple[str, ...] = ()  # paths (relative to the root) to delete after install


RECIPES: dict[str, Recipe] = {
    "postgres": Recipe(
        packages=("postgresql-15",),
        entrypoint="postgres-entrypoint.sh",
        changes=(
            "EXPOSE 5432",
            # Debian keeps initdb/postgres/psql here; testcontainers runs `sh -c "psql ..."`.
            "ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin"
            ":/usr/bin:/sbin:/bin",
            "ENV PGDATA=/var/lib/postgresql/data",
            # (No STOPSIGNAL SIGINT as in the official image: docker 20.10's import refuses it.)
        ),
        # The cluster the package's postinst creates; the entrypoint makes its own.
        remove=("etc/postgresql/15/main", "var/lib/postgresql/15"),
    ),
}


def _log(msg: str) -> None:
    print(f"images: {msg}", file=sys.stderr, flush=True)


def _recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown lab image {name!r}; known: {', '.join(RECIPES)}") from None


def image_tag(name: str) -> str:
    """The tag the image built from the current recipe has (nothing is built)."""
    recipe = _recipe(name)
    h = hashlib.sha256(f"{BUILDER_VERSION}\0{SUITE}\0{recipe!r}\0".encode())
    h.update((HERE / recipe.entrypoint).read_bytes())
    return f"runbook-lab/{name}:{h.hexdigest()[:12]}"


def _image_exists(tag: str) -> bool:
    import docker

    try:
        docker.from_env().images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def require_image(name: str) -> str:
    """The tag of the image, or a loud RuntimeError when the lab is not set up."""
    import docker

    tag = image_tag(name)
    try:
        exists = _image_exists(tag)
    except docker.errors.DockerException as e:
        msg = f"LAB NOT READY: no Docker engine answers ({e}). Run scripts/setup."
        raise RuntimeError(msg) from e
    if not exists:
        raise RuntimeError(
            f"LAB NOT READY: image {tag} is missing (its recipe changed or it "
            "was never built). Run scripts/setup."
        )
    return tag


def ensure_image(name: str) -> str:
    """Build the image if no image has its tag yet; return the tag."""
    tag = image_tag(name)
    if _image_exists(tag):
        _log(f"{tag} is up to date")
    else:
        _build(_recipe(name), tag)
    return tag


def _run(cmd: list[str], what: str, log: Path | None = None) -> None:
    """Run quietly; on failure show the end of the output (and of `log`), which says why."""
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode:
        out = proc.stdout + (log.read_text(errors="replace") if log and log.exists() else "")
        tail = "\n".join(out.splitlines()[-30:])
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{tail}")


def _unmount_below(root: Path) -> None:
    # An interrupted debootstrap can leave /proc or /sys mounted inside the root.
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f]
    for point in sorted((p for p in points if p.startswith(f"{root}/")), reverse=True):
        subprocess.run(["umount", "-l", point], check=False)


def _build(recipe: Recipe, tag: str) -> None:
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="runbook-lab-", dir="/var/tmp"))
    root = workdir / "root"
    try:
        _log(
            f"building {tag}: debootstrap {SUITE} + {' '.join(recipe.packages)} "
            f"from {MIRROR} (about a minute)"
        )
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(recipe.packages)}",
                SUITE,
                str(root),
                MIRROR,
            ],
            "debootstrap",
            log=root / "debootstrap/debootstrap.log",  # the details; deleted with the root
        )
        _unmount_below(root)
        for rel in TRIM + recipe.remove:
            shutil.rmtree(root / rel, ignore_errors=True)
        entrypoint = root / ENTRYPOINT.lstrip("/")
        shutil.copyfile(HERE / recipe.entrypoint, entrypoint)
        entrypoint.chmod(0o755)

        _log(f"importing into docker ({time.monotonic() - started:.0f} s so far)")
        changes = [f'ENTRYPOINT ["{ENTRYPOINT}"]', *recipe.changes]
        with subprocess.Popen(
            ["tar", "-C", str(root), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE
        ) as tar:
            imported = subprocess.run(
                ["docker", "import", *(f"--change={c}" for c in changes), "-"],
                stdin=tar.stdout,
                capture_output=True,
                text=True,
            )
        image_id = imported.stdout.strip()
        # Tag only a complete import: a failed tar would still leave an image behind.
        if tar.returncode or imported.returncode:
            if image_id:
                subprocess.run(["docker", "rmi", image_id], capture_output=True, check=False)
            raise RuntimeError(f"import failed (tar exit {tar.returncode}): {imported.stderr}")
        _run(["docker", "tag", image_id, tag], "docker tag")
        _log(f"built {tag} in {time.monotonic() - started:.0f} s")
    finally:
        _unmount_below(root)
        # --one-file-system: never follow a mount that survived into the host's /proc or /sys.
        subprocess.run(["rm", "-rf", "--one-file-system", str(workdir)], check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.lab.images",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build the missing images (all by default)")
    build.add_argument("names", nargs="*", metavar="NAME")
    tag = sub.add_parser("tag", help="print an image's tag")
    tag.add_argument("name", metavar="NAME")
    args = parser.parse_args(argv)

    try:
        if args.command == "tag":
            print(image_tag(args.name))
        else:
            for name in args.names or RECIPES:
                ensure_image(name)
    except (ValueError, RuntimeError) as e:
        _log(str(e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
