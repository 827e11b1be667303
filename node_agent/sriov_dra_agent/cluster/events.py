"""Core v1 Events on ResourceClaims, so ``kubectl describe resourceclaim`` tells the story.

Posting is best effort: a failed post is logged, never raised, because an Event
must not turn a successful VF operation into a failure.

Repeats are correlated as client-go's recorder does: the same (claim uid, type,
reason, message) is created once; later occurrences only bump ``count`` and
``lastTimestamp`` of that Event by PATCH, at most once per ``repeat_interval``
(the occurrences in between are counted locally), so a failure retried on every
resync shows as "(x N over ...)" in ``kubectl describe`` instead of N Events.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from sriov_dra.naming import claim_ref
from sriov_dra_kube.client import KubeApi, is_status

logger = logging.getLogger(__name__)

COMPONENT: Final = "sriov-dra-agent"
MAX_MESSAGE: Final = 1024
REPEAT_INTERVAL_SECONDS: Final = 600.0
FORGET_AFTER_SECONDS: Final = 3600.0
"""The API server's default Event TTL: after it, the Event is gone anyway."""
MAX_TRACKED: Final = 4096


def _timestamp() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_body(
    claim: Mapping[str, Any], *, event_type: str, reason: str, message: str, node: str
) -> dict[str, Any]:
    """The Event object for ``claim`` (pure; ``claim`` needs metadata name/namespace/uid)."""
    meta = claim["metadata"]
    now = _timestamp()
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


EventKey = tuple[str, str, str, str]
"""(claim uid, type, reason, message)."""


@dataclass
class _Posted:
    namespace: str
    name: str
    count: int
    """Occurrences so far, including those not yet written to the Event."""
    written: float
    """Clock time of the last create or PATCH."""
    seen: float
    """Clock time of the last occurrence."""


class EventRecorder:
    """Posts Events for one node's agent, correlating repeats (see the module docstring)."""

    def __init__(
        self,
        api: KubeApi,
        *,
        node: str,
        repeat_interval: float = REPEAT_INTERVAL_SECONDS,
        forget_after: float = FORGET_AFTER_SECONDS,
        max_tracked: int = MAX_TRACKED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.node = node
        self.repeat_interval = repeat_interval
        self.forget_after = forget_after
        self.max_tracked = max_tracked
        self.clock = clock
        self._posted: dict[EventKey, _Posted] = {}

    def _prune(self, now: float) -> None:
        stale = [k for k, p in self._posted.items() if now - p.seen > self.forget_after]
        for key in stale:
            del self._posted[key]
        excess = len(self._posted) - self.max_tracked + 1
        if excess > 0:
            oldest = sorted(self._posted, key=lambda k: self._posted[k].seen)[:excess]
            for key in oldest:
                del self._posted[key]

    async def post(
        self, claim: Mapping[str, Any], *, warning: bool, reason: str, message: str
    ) -> None:
        """Post one Event on ``claim`` (or count a repeat); logs instead of raising on failure."""
        event_type = "Warning" if warning else "Normal"
        meta = claim["metadata"]
        key: EventKey = (str(meta.get("uid", "")), event_type, reason, message[:MAX_MESSAGE])
        now = self.clock()
        self._prune(now)
        extra = {"claim": claim_ref(meta["namespace"], meta["name"]), "node": self.node}
        posted = self._posted.get(key)
        if posted is not None:
            posted.count += 1
            posted.seen = now
            if now - posted.written < self.repeat_interval:
                logger.debug("event %s repeated (x%d)", reason, posted.count, extra=extra)
                return
            try:
                await self.api.patch_event(
                    posted.namespace,
                    posted.name,
                    {"count": posted.count, "lastTimestamp": _timestamp()},
                )
                posted.written = now
                return
            except Exception as exc:
                if not is_status(exc, 404):
                    logger.warning("could not update event %s: %s", reason, exc, extra=extra)
                    return
                # The Event expired (TTL): post it afresh.
                del self._posted[key]
        body = event_body(claim, event_type=event_type, reason=reason, message=message,
                          node=self.node)  # fmt: skip
        try:
            created = await self.api.create_event(meta["namespace"], body)
        except Exception as exc:
            logger.warning("could not post event %s: %s", reason, exc, extra=extra)
            return
        self._posted[key] = _Posted(
            namespace=str(meta["namespace"]),
            name=str(created["metadata"]["name"]),
            count=1,
            written=now,
            seen=now,
        )

    async def normal(self, claim: Mapping[str, Any], reason: str, message: str) -> None:
        await self.post(claim, warning=False, reason=reason, message=message)

    async def warning(self, claim: Mapping[str, Any], reason: str, message: str) -> None:
        await self.post(claim, warning=True, reason=reason, message=message)
