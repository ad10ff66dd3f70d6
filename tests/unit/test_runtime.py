"""diagnostics.runtime: Docker and Kubernetes implement the service runtime Protocols with the
very same signatures, so that diagnostics/service.py can call either without knowing which.
(Their behaviour against a real engine and cluster: tests/scenarios/test_services.py and
test_kubernetes.py.)"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from diagnostics.docker import DockerOperator, DockerReader
from diagnostics.kubernetes import KubernetesOperator, KubernetesReader
from diagnostics.runtime import ServiceReader, ServiceRuntime
from runner.errors import PermanentError

READERS = [DockerReader, KubernetesReader]
OPERATORS = [DockerOperator, KubernetesOperator]


def _operations(protocol: type) -> list[str]:
    """The methods a Protocol declares itself and through the Protocols it extends."""
    names = {name for klass in protocol.__mro__
             if klass is not object and getattr(klass, "_is_protocol", False)
             and klass.__name__ != "Protocol"
             for name, value in vars(klass).items()
             if callable(value) and not name.startswith("_")}
    return sorted(names)


def _bare(cls: type[Any]) -> Any:
    """An instance without an engine or a cluster behind it: enough for isinstance, and for
    the checks an operator makes before it reaches the runtime."""
    return object.__new__(cls)


def test_the_protocols_name_every_operation_the_service_steps_use() -> None:
    assert _operations(ServiceReader) == sorted([
        "identity", "status", "logs", "memory", "processes", "deployment", "pin_rollback",
        "cancel", "close"])
    assert set(_operations(ServiceRuntime)) - set(_operations(ServiceReader)) == {
        "restart", "start", "rollback", "scale", "set_memory_limit", "interrupt"}


@pytest.mark.parametrize("reader_class", READERS)
def test_each_reader_is_a_service_reader_and_cannot_act(reader_class: type[Any]) -> None:
    reader = _bare(reader_class)
    assert isinstance(reader, ServiceReader)
    assert not isinstance(reader, ServiceRuntime)  # what probes get has no actions


@pytest.mark.parametrize("operator_class", OPERATORS)
def test_each_operator_is_a_service_runtime(operator_class: type[Any]) -> None:
    assert isinstance(_bare(operator_class), ServiceRuntime)


@pytest.mark.parametrize("implementation", READERS + OPERATORS)
def test_every_signature_is_the_protocols_own(implementation: type[Any]) -> None:
    protocol = ServiceRuntime if implementation in OPERATORS else ServiceReader
    for name in _operations(protocol):
        declared = inspect.signature(getattr(protocol, name))
        implemented = inspect.signature(getattr(implementation, name))
        assert implemented == declared, f"{implementation.__name__}.{name}{implemented} " \
                                        f"is not {protocol.__name__}.{name}{declared}"


def test_docker_refuses_a_kubernetes_revision_pin_before_reaching_the_engine() -> None:
    operator = _bare(DockerOperator)  # no _api: reaching the engine would be AttributeError
    with pytest.raises(PermanentError, match="pinned by Kubernetes services only"):
        operator.rollback("api:v1", pinned={"revision_uid": "0f3c"})


def test_kubernetes_refuses_a_docker_image_pin_before_reaching_the_cluster() -> None:
    operator = _bare(KubernetesOperator)  # no api: reaching the cluster would be AttributeError
    with pytest.raises(PermanentError, match="pinned by Docker services only"):
        operator.rollback("api:v1", image_id="sha256:0f3c")
