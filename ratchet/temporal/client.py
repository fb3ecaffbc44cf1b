"""One way to connect, so every client, worker and test uses the same data converter (pydantic payloads,
secrets as references, encrypted with a key: ``ratchet.temporal.codecs``)."""

from __future__ import annotations

from temporalio.client import Client

from ratchet.settings import Settings, get_settings
from ratchet.temporal.codecs import data_converter

CAMPAIGN_QUEUE_SUFFIX = "campaigns"


def campaign_queue(settings: Settings) -> str:
    """The task queue the campaign workflows run on."""
    return settings.task_queue(CAMPAIGN_QUEUE_SUFFIX)


async def connect(settings: Settings | None = None) -> Client:
    """A Temporal client for the configured address and namespace."""
    settings = settings or get_settings()
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(),
    )
