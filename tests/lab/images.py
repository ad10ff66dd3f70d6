"""Lab images, built locally from Debian packages and cached by a hash of their recipe.

No image registry is reachable, so each base image is a `debootstrap` root imported
with `docker import` (a `Recipe`); an application image adds its files and settings on
top of a base with `docker build` (an `AppRecipe`), so that its variants share the base
and a change to the application never repeats the debootstrap. The tag carries a hash of
the recipe and of the files it installs: an image is rebuilt only when they change.

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
    """A base image: debootstrap with `packages`, trimmed, then `docker import`."""

    # (No new fields here: the tag hashes this repr, a new field would rebuild every image.)
    packages: tuple[str, ...]
    entrypoint: str | None = None  # a file next to this module, installed as ENTRYPOINT
    changes: tuple[str, ...] = ()  # more `docker import --change` instructions
    remove: tuple[str, ...] = ()  # paths (relative to the root) to delete after install


@dataclass(frozen=True)
class AppRecipe:
    """An application image: `files` and Dockerfile `instructions` on top of a base image.

    Tagged `runbook-lab/<repository>:<hash>-<variant>`, so that the variants of one
    application (good and bad builds) look like two releases of one image.
    """

    base: str  # the RECIPES name of a base image
    repository: str
    variant: str
    files: tuple[tuple[str, str], ...]  # (a file next to this module, its path in the image)
    instructions: tuple[str, ...] = ()  # ENV, LABEL, ENTRYPOINT ...


# The demo API service (api-app/ is a folder of files for the image, not a Python
# package); its two builds differ only in version and flavor.
_API_FILES = (("api-app/app.py", "/app/app.py"),)
# Exec form: python is PID 1, so that a memory-limit OOM kill is reported as OOMKilled.
_API_ENTRYPOINT = 'ENTRYPOINT ["python3", "/app/app.py"]'


RECIPES: dict[str, Recipe | AppRecipe] = {
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
    "api-base": Recipe(packages=("python3", "python3-psycopg")),
    "api-good": AppRecipe(
        base="api-base",
        repository="api",
        variant="good",
        files=_API_FILES,
        instructions=(
            "ENV APP_FLAVOR=good APP_VERSION=1.4.2",
            "LABEL org.opencontainers.image.version=1.4.2",
            "EXPOSE 8080",
            _API_ENTRYPOINT,
        ),
    ),
    "api-bad": AppRecipe(
        base="api-base",
        repository="api",
        variant="bad",
        files=_API_FILES,
        instructions=(
            "ENV APP_FLAVOR=bad APP_VERSION=1.5.0",
            "LABEL org.opencontainers.image.version=1.5.0",
            "EXPOSE 8080",
            _API_ENTRYPOINT,
        ),
    ),
    # The daemon's base (tests/lab/daemonimage.py installs runbook from this checkout on it):
    # a venv's Python, what the step kinds call out to (ssh for Ansible, CA certificates),
    # and tini as PID 1 to pass on SIGTERM and reap what the kinds leave behind.
    "daemon-base": Recipe(packages=("python3", "python3-venv", "ca-certificates",
                                    "openssh-client", "tini")),
    # A host to reach over SSH (and, later, with Ansible: hence python3). The host keys are
    # made once, by the build step of the `sshd` image, so they are fixed for that build.
    "sshd-base": Recipe(packages=("openssh-server", "procps", "coreutils", "grep", "python3")),
    "sshd": AppRecipe(
        base="sshd-base",
        repository="sshd",
        variant="lab",
        files=(("sshd-entrypoint.sh", ENTRYPOINT),),
        instructions=(
            # (COPY keeps the staged file's mode, which has no x bit.)
            f"RUN chmod 755 {ENTRYPOINT} && {ENTRYPOINT} --build",
            "EXPOSE 22",
            f'ENTRYPOINT ["{ENTRYPOINT}"]',
        ),
    ),
    # The sshd host with chrony (and libfaketime for a server whose time is off), started by
    # `lab-clock` in a real clock state; see sshd-clock.sh. policy-rc.d keeps the package's
    # postinst from starting chronyd with Debian's pool; that config goes too.
    "sshd-chrony": AppRecipe(
        base="sshd",
        repository="sshd-chrony",
        variant="lab",
        files=(("sshd-clock.sh", "/usr/local/bin/lab-clock"),),
        instructions=(
            "RUN printf '#!/bin/sh\\nexit 101\\n' >/usr/sbin/policy-rc.d "
            "&& chmod 755 /usr/sbin/policy-rc.d /usr/local/bin/lab-clock "
            "&& apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
            "--no-install-recommends chrony faketime >/dev/null "
            "&& rm -rf /usr/sbin/policy-rc.d /var/lib/apt/lists/* /var/cache/apt/*.bin "
            "&& echo '# written by lab-clock' >/etc/chrony/chrony.conf",
        ),
    ),
    # The sshd host with systemd as PID 1 (ssh.service, dbus for the login user's systemctl),
    # for the checks that read unit state; tests/lab/sshd.py's systemd_run_options() has
    # the mounts it needs (no --privileged). lab-broken.service is there to be started and
    # fail. The timers that would reach the network (apt) or fail in a container are masked.
    "sshd-systemd": AppRecipe(
        base="sshd",
        repository="sshd-systemd",
        variant="lab",
        files=(("sshd-systemd/lab-keys.sh", "/usr/local/bin/lab-keys"),
               ("sshd-systemd/lab-keys.service", "/etc/systemd/system/lab-keys.service"),
               ("sshd-systemd/lab-broken.service", "/etc/systemd/system/lab-broken.service")),
        instructions=(
            "RUN printf '#!/bin/sh\\nexit 101\\n' >/usr/sbin/policy-rc.d "
            "&& chmod 755 /usr/sbin/policy-rc.d /usr/local/bin/lab-keys "
            "&& apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
            "--no-install-recommends systemd dbus >/dev/null "
            "&& rm -rf /usr/sbin/policy-rc.d /var/lib/apt/lists/* /var/cache/apt/*.bin "
            "&& systemctl enable lab-keys.service ssh.service "
            "&& systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer "
            "fstrim.timer dpkg-db-backup.timer console-getty.service",
            "ENV container=docker",
            "STOPSIGNAL SIGRTMIN+3",
            'ENTRYPOINT ["/lib/systemd/systemd"]',
        ),
    ),
    # The sync-failure lab's host: the sshd host plus the sync-engine stand-in (stdlib +
    # Debian's python3-psycopg, which the build installs from the mirror), with the log and
    # state directories of the `runbook` user it runs as. tests/lab/sync.py writes its
    # settings (/etc/sync-engine/env) when it starts a container.
    "sync-host": AppRecipe(
        base="sshd",
        repository="sync-host",
        variant="lab",
        files=(("sync-engine/sync-engine", "/usr/local/bin/sync-engine"),),
        instructions=(
            "RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
            "--no-install-recommends python3-psycopg >/dev/null "
            "&& rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin",
            "RUN chmod 755 /usr/local/bin/sync-engine "
            "&& install -d -o runbook -g runbook /home/runbook/logs /home/runbook/state "
            "&& install -d -m 750 -g runbook /etc/sync-engine",
        ),
    ),
}


def _log(msg: str) -> None:
    print(f"images: {msg}", file=sys.stderr, flush=True)


def _recipe(name: str) -> Recipe | AppRecipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown lab image {name!r}; known: {', '.join(RECIPES)}") from None


def image_tag(name: str) -> str:
    """The tag the image built from the current recipe has (nothing is built)."""
    recipe = _recipe(name)
    if isinstance(recipe, AppRecipe):
        # The base's tag stands for everything below: a new base rebuilds its applications.
        h = hashlib.sha256(f"{BUILDER_VERSION}\0{image_tag(recipe.base)}\0{recipe!r}\0".encode())
        for source, _ in recipe.files:
            h.update((HERE / source).read_bytes())
        return f"runbook-lab/{recipe.repository}:{h.hexdigest()[:12]}-{recipe.variant}"
    h = hashlib.sha256(f"{BUILDER_VERSION}\0{SUITE}\0{recipe!r}\0".encode())
    if recipe.entrypoint is not None:
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
    recipe = _recipe(name)
    if _image_exists(tag):
        _log(f"{tag} is up to date")
    elif isinstance(recipe, AppRecipe):
        _build_app(recipe, ensure_image(recipe.base), tag)
    else:
        _build(recipe, tag)
    return tag


def prune_stale_images() -> None:
    """Remove runbook-lab images whose recipe has changed since: each build of a changed
    recipe leaves its predecessor behind (a few hundred MB). Images a container still
    uses stay; Docker refuses to remove those."""
    import docker

    client = docker.from_env()
    current = {image_tag(name) for name in RECIPES}
    for image in client.images.list(name="runbook-lab/*"):
        for tag in image.tags:
            if tag.startswith("runbook-lab/") and tag not in current:
                try:
                    client.images.remove(tag)
                    _log(f"removed stale {tag}")
                except docker.errors.APIError as e:
                    _log(f"kept stale {tag}: {e.explanation or e}")


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


def _build_app(recipe: AppRecipe, base_tag: str, tag: str) -> None:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="runbook-lab-") as context:
        lines = [f"FROM {base_tag}"]
        for i, (source, target) in enumerate(recipe.files):
            staged = f"{i}-{Path(source).name}"
            shutil.copyfile(HERE / source, Path(context, staged))
            lines.append(f"COPY {staged} {target}")
        Path(context, "Dockerfile").write_text("\n".join([*lines, *recipe.instructions, ""]))
        # The legacy builder: it takes FROM from the local store, no registry involved.
        proc = subprocess.run(
            ["docker", "build", "--quiet", "--tag", tag, context],
            env={**os.environ, "DOCKER_BUILDKIT": "0"},
            capture_output=True,
            text=True,
        )
    if proc.returncode:
        raise RuntimeError(f"docker build of {tag} failed:\n{proc.stdout}{proc.stderr}")
    _log(f"built {tag} on {base_tag} in {time.monotonic() - started:.1f} s")


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
        changes = list(recipe.changes)
        if recipe.entrypoint is not None:
            entrypoint = root / ENTRYPOINT.lstrip("/")
            shutil.copyfile(HERE / recipe.entrypoint, entrypoint)
            entrypoint.chmod(0o755)
            changes.insert(0, f'ENTRYPOINT ["{ENTRYPOINT}"]')

        _log(f"importing into docker ({time.monotonic() - started:.0f} s so far)")
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
    build = sub.add_parser("build", help="build the missing images (all by default; "
                           "then remove the runbook-lab images older recipes left behind)")
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
            if not args.names:
                prune_stale_images()
    except (ValueError, RuntimeError) as e:
        _log(str(e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
