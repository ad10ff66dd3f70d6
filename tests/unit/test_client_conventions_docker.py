"""Docker as the docker CLI picks its engine: DOCKER_HOST, else the current context
(DOCKER_CONTEXT, else config.json's currentContext) read from the CLI's own context store.
(Against the real dockerd through a context: tests/scenarios/test_client_conventions_lab.py.)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from diagnostics.docker import context_endpoint
from runner.errors import PermanentError


def _context(config: Path, name: str, host: str, *, tls: bool = False) -> None:
    """A context as `docker context create NAME --docker host=HOST` stores it."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = config / "contexts" / "meta" / digest
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps({
        "Name": name, "Metadata": {"Description": "test"},
        "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": False}}}))
    if tls:
        files = config / "contexts" / "tls" / digest / "docker"
        files.mkdir(parents=True)
        for pem in ("ca.pem", "cert.pem", "key.pem"):
            (files / pem).write_text("-----BEGIN-----\n")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    config = tmp_path / "docker-config"
    config.mkdir()
    _context(config, "colima", "unix:///home/me/.colima/default/docker.sock")
    _context(config, "desktop-linux", "unix:///home/me/.docker/desktop/docker.sock")
    _context(config, "remote", "tcp://10.0.0.9:2376", tls=True)
    return config


def test_the_config_s_current_context(config: Path) -> None:
    (config / "config.json").write_text(json.dumps({"currentContext": "colima"}))
    assert context_endpoint({"DOCKER_CONFIG": str(config)}) == {
        "base_url": "unix:///home/me/.colima/default/docker.sock"}


def test_docker_context_wins_over_the_config(config: Path) -> None:
    (config / "config.json").write_text(json.dumps({"currentContext": "colima"}))
    assert context_endpoint({"DOCKER_CONFIG": str(config), "DOCKER_CONTEXT": "desktop-linux"}) \
        == {"base_url": "unix:///home/me/.docker/desktop/docker.sock"}


def test_the_default_context_or_none_is_the_local_socket(config: Path, tmp_path: Path) -> None:
    assert context_endpoint({"DOCKER_CONFIG": str(config)}) == {}  # no config.json
    (config / "config.json").write_text(json.dumps({"auths": {}}))
    assert context_endpoint({"DOCKER_CONFIG": str(config)}) == {}
    assert context_endpoint({"DOCKER_CONFIG": str(config), "DOCKER_CONTEXT": "default"}) == {}


def test_home_s_docker_folder_without_docker_config(config: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    config.rename(home / ".docker")
    monkeypatch.setenv("HOME", str(home))
    assert context_endpoint({"DOCKER_CONTEXT": "colima"})["base_url"].endswith(
        "colima/default/docker.sock")


def test_a_tls_context_carries_its_files(config: Path) -> None:
    found = context_endpoint({"DOCKER_CONFIG": str(config), "DOCKER_CONTEXT": "remote"})
    assert found["base_url"] == "tcp://10.0.0.9:2376"
    tls = found["tls"]
    digest = hashlib.sha256(b"remote").hexdigest()
    files = config / "contexts" / "tls" / digest / "docker"
    assert tls.cert == (str(files / "cert.pem"), str(files / "key.pem"))
    assert tls.ca_cert == str(files / "ca.pem") and tls.verify is True


def test_a_context_that_does_not_exist_is_said(config: Path) -> None:
    with pytest.raises(PermanentError, match=r"the Docker context 'gone' does not exist "
                                             r"\(no .*meta\.json\)"):
        context_endpoint({"DOCKER_CONFIG": str(config), "DOCKER_CONTEXT": "gone"})


def test_a_broken_config_is_said(config: Path) -> None:
    (config / "config.json").write_text("{not json")
    with pytest.raises(PermanentError, match=r"cannot read .*config\.json"):
        context_endpoint({"DOCKER_CONFIG": str(config)})
