"""The one Temporal client factory, search-attribute registration and the workflow sandbox runner."""

import dataclasses
from typing import TYPE_CHECKING

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.runtime import Runtime
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from leadloop.domain.search import SEARCH_ATTRIBUTES
from leadloop.infra.settings import Settings

if TYPE_CHECKING:
    from leadloop.infra.codec import AesGcmCodec


async def register_search_attributes(client: Client) -> list[str]:
    """Add leadloop's search attributes the namespace lacks (an external cluster); returns those added."""
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest

    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    missing = {
        key.name: IndexedValueType.ValueType(key.indexed_value_type)
        for key in SEARCH_ATTRIBUTES
        if key.name not in listed.custom_attributes
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
        )
    return sorted(missing)


def codec(settings: Settings) -> "AesGcmCodec | None":
    """The payload codec the settings ask for (None: payloads are stored as JSON)."""
    if not settings.encryption_keys:
        return None
    from leadloop.infra.codec import AesGcmCodec

    assert settings.encryption_key_id is not None  # the settings' validator picks it
    keys = {key_id: key.get_secret_value() for key_id, key in settings.encryption_keys.items()}
    return AesGcmCodec.from_base64(keys, settings.encryption_key_id)


def data_converter(settings: Settings) -> DataConverter:
    """pydantic's JSON converter, with AES-GCM encryption when keys are configured."""
    sealer = codec(settings)
    if sealer is None:
        return pydantic_data_converter
    return dataclasses.replace(pydantic_data_converter, payload_codec=sealer)


async def connect(settings: Settings, *, lazy: bool = False, runtime: Runtime | None = None) -> Client:
    """A client with the pydantic data converter, for the worker, the CLI and the HTTP service.

    Args:
        lazy: connect on first use, so a service can start (and store events) while Temporal is down.
        runtime: the SDK runtime whose metrics the process exports; the SDK's default otherwise.
    """
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
        tls=settings.temporal_tls or settings.temporal_api_key is not None,
        api_key=settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None,
        lazy=lazy,
        runtime=runtime,
    )


#: Modules the sandbox imports afresh for every workflow instance it creates.
WORKFLOW_MODULES = (
    "workflows",
    "workflows.commands",
    "workflows.sales",
    "workflows.view",
    "workflows.lead_nurture",
    "workflows.webhook_delivery",
)


def precompile_workflows(modules: tuple[str, ...] = WORKFLOW_MODULES) -> None:
    """Write the workflow modules' bytecode once, if missing or stale.

    The sandbox re-imports the workflow module for each new workflow instance (each lead the worker picks
    up, and each one evicted from its cache). Without a .pyc (PYTHONDONTWRITEBYTECODE=1, as in this
    machine's environment and many container images) every import compiles the source: 12 ms a
    workflow instead of 3 ms measured here, the largest single cost in the worker's profile (bench/).
    Where __pycache__ cannot be written nothing changes.
    """
    import importlib.util
    import os
    import py_compile

    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin or not spec.cached or not spec.origin.endswith(".py"):
            continue
        try:
            if os.path.exists(spec.cached) and os.path.getmtime(spec.cached) >= os.path.getmtime(spec.origin):
                continue
            py_compile.compile(spec.origin, cfile=spec.cached, doraise=True)
        except (OSError, py_compile.PyCompileError):
            continue


def workflow_runner() -> SandboxedWorkflowRunner:
    """The sandbox, with zoneinfo usable (send windows are computed in the lead's zone).

    The default restrictions forbid members of zoneinfo.ZoneInfo, so a zone cannot be used as a
    tzinfo inside a workflow; tzdata is pinned, so every worker and replay sees the same zones.
    leadloop's pure modules and pydantic are passed through rather than re-imported per run, and the
    workflow module's bytecode is written once (`precompile_workflows`).
    """
    precompile_workflows()
    default = SandboxRestrictions.default
    members = default.invalid_module_members
    children = {k: v for k, v in members.children.items() if k != "zoneinfo"}
    restrictions = dataclasses.replace(
        default, invalid_module_members=dataclasses.replace(members, children=children)
    ).with_passthrough_modules("zoneinfo", "leadloop", "pydantic", "pydantic_core", "yaml")
    return SandboxedWorkflowRunner(restrictions=restrictions)
