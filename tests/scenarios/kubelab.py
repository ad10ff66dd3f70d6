"""The lab's Kubernetes cluster as one session-scoped fixture: whichever test file needs it,
the suite starts the cluster once (and stops it at the end, unless it was running before)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from tests.lab import kube


@pytest.fixture(scope="session")
def k8s() -> Iterator[kube.Cluster]:
    """The lab cluster for the session: started here (and stopped afterwards) unless it was
    running already. A cluster that cannot start fails every test that needs it, loudly."""
    stack = contextlib.ExitStack()
    try:
        cluster = stack.enter_context(kube.cluster())
        kube.delete_test_namespaces()  # left by a session that died
    except Exception as exc:
        stack.close()
        pytest.fail(f"LAB MISSING: the lab's Kubernetes cannot start: {exc}", pytrace=False)
    with stack:
        yield cluster
