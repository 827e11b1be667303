"""Core v1 Events on ResourceClaims, so ``kubectl describe resourceclaim`` tells the story.

Posting is best effort: a failed post is logged, never raised, because an Event
must not turn a successful VF operation into a failure.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping
from typing import Any, Final

from sriov_dra.naming import claim_ref

from sriov_dra_agent.kube_api import KubeApi

logger = logging.getLogger(__name__)

COMPONENT: Final = "sriov-dra-agent"
MAX_MESSAGE: Final = 1024


def event_body(
    claim: Mapping[str, Any], *, event_type: str, reason: str, message: str, node: str
) -> dict[str, Any]:
    """The Event object for ``claim`` (pure; ``claim`` needs metadata name/namespace/uid)."""
    meta = claim["metadata"]
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaim",
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid", ""),
        },
        "type": event_type,
        "reason": reason,
        "message": message[:MAX_MESSAGE],
        "source": {"component": COMPONENT, "host": node},
        "reportingComponent": COMPONENT,
        "reportingInstance": node,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


class EventRecorder:
    """Posts Events for one node's agent."""

    def __init__(self, api: KubeApi, *, node: str) -> None:
        self.api = api
        self.node = node

    async def post(
        self, claim: Mapping[str, Any], *, warning: bool, reason: str, message: str
    ) -> None:
        """Post one Event on ``claim``; logs instead of raising on failure."""
        body = event_body(
            claim,
            event_type="Warning" if warning else "Normal",
            reason=reason,
            message=message,
            node=self.node,
        )
        meta = claim["metadata"]
        try:
            await self.api.create_event(meta["namespace"], body)
        except Exception as exc:
            logger.warning(
                "could not post event %s: %s",
                reason,
                exc,
                extra={"claim": claim_ref(meta["namespace"], meta["name"]), "node": self.node},
            )

    async def normal(self, claim: Mapping[str, Any], reason: str, message: str) -> None:
        await self.post(claim, warning=False, reason=reason, message=message)

    async def warning(self, claim: Mapping[str, Any], reason: str, message: str) -> None:
        await self.post(claim, warning=True, reason=reason, message=message)
