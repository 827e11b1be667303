"""Core v1 Events, so ``kubectl describe`` tells the story of a claim (or a pod).

One body (:func:`event_body`) and one create/PATCH path (:class:`EventRecorder`)
for every component that posts Events: the operator, the agent and the test
world's node emulator. Posting is best effort: a failed post is logged, never
raised, because an Event explains state and must not turn a successful
operation into a failure.

Two policies on top of it:

- :meth:`EventRecorder.post` correlates repeats as client-go's recorder does (the
  agent's and the node emulator's way): the same (object uid, type, reason,
  message) is created once; later occurrences only bump ``count`` and
  ``lastTimestamp`` of that Event by PATCH, at most once per ``repeat_interval``
  (the occurrences in between are counted locally), so a failure retried on
  every resync shows as "(x N over ...)" instead of N Events.
- :class:`StateEvents` posts once per state change (the operator's way): a
  claim reconciled many times while it waits gets one Event, and the last
  (reason, message) posted per claim is remembered, across restarts too (seeded
  from the Events listed at start, :func:`last_posted`). Notes beside the state
  (:meth:`StateEvents.post_once`) are posted at most once per claim and message.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from sriov_dra_kube.client import ApiException, KubeApi, is_status

logger = logging.getLogger(__name__)

MAX_MESSAGE: Final = 1024
"""The API server refuses longer Event messages."""
REPEAT_INTERVAL_SECONDS: Final = 600.0
FORGET_AFTER_SECONDS: Final = 3600.0
"""The API server's default Event TTL: after it, the Event is gone anyway."""
MAX_TRACKED: Final = 4096

API_VERSIONS: Final = {"ResourceClaim": "resource.k8s.io/v1", "Pod": "v1"}
"""The involved object's apiVersion when the object does not say (list items do not)."""
LOG_KEYS: Final = {"ResourceClaim": "claim", "Pod": "pod"}
"""The log field naming the involved object, as every log line of ours names it."""


def _timestamp() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_body(
    obj: Mapping[str, Any],
    *,
    kind: str = "ResourceClaim",
    event_type: str,
    reason: str,
    message: str,
    component: str,
    instance: str,
    host: str = "",
) -> dict[str, Any]:
    """The Event on ``obj`` (pure; ``obj`` needs metadata name and namespace, uid if known).

    ``component`` and ``instance`` name the poster; ``host``, where set, the node
    it runs on. Messages are cut to the API's 1 KiB.
    """
    meta = obj["metadata"]
    involved = {
        "apiVersion": obj.get("apiVersion") or API_VERSIONS.get(kind, "v1"),
        "kind": kind,
        "name": meta["name"],
        "namespace": meta["namespace"],
        "uid": meta.get("uid", ""),
    }
    if meta.get("resourceVersion"):
        involved["resourceVersion"] = meta["resourceVersion"]
    now = _timestamp()
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": involved,
        "type": event_type,
        "reason": reason,
        "message": message[:MAX_MESSAGE],
        "source": {"component": component, **({"host": host} if host else {})},
        "reportingComponent": component,
        "reportingInstance": instance,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


EventKey = tuple[str, str, str, str]
"""(object uid, type, reason, message)."""


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
    """Posts Events on objects of ``kind`` as ``component``/``instance`` (module docstring)."""

    def __init__(
        self,
        api: KubeApi,
        *,
        component: str,
        instance: str,
        host: str = "",
        kind: str = "ResourceClaim",
        repeat_interval: float = REPEAT_INTERVAL_SECONDS,
        forget_after: float = FORGET_AFTER_SECONDS,
        max_tracked: int = MAX_TRACKED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.component = component
        self.instance = instance
        self.host = host
        self.kind = kind
        self.repeat_interval = repeat_interval
        self.forget_after = forget_after
        self.max_tracked = max_tracked
        self.clock = clock
        self._posted: dict[EventKey, _Posted] = {}

    def _log_extra(self, obj: Mapping[str, Any], reason: str) -> dict[str, Any]:
        meta = obj["metadata"]
        extra = {
            LOG_KEYS.get(self.kind, self.kind.lower()): f"{meta['namespace']}/{meta['name']}",
            "uid": str(meta.get("uid", "")),
            "reason": reason,
        }
        if self.host:
            extra["node"] = self.host
        return extra

    async def create(
        self, obj: Mapping[str, Any], *, warning: bool, reason: str, message: str
    ) -> dict[str, Any] | None:
        """Create a new Event on ``obj``; the Event created, None when the API refused it."""
        body = event_body(
            obj,
            kind=self.kind,
            event_type="Warning" if warning else "Normal",
            reason=reason,
            message=message,
            component=self.component,
            instance=self.instance,
            host=self.host,
        )
        try:
            return await self.api.create_event(obj["metadata"]["namespace"], body)
        except Exception as exc:
            status = exc.status if isinstance(exc, ApiException) else None
            logger.warning(
                "could not post event %s: %s",
                reason,
                exc,
                extra={**self._log_extra(obj, reason), "status": status},
            )
            return None

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
        self, obj: Mapping[str, Any], *, warning: bool, reason: str, message: str
    ) -> None:
        """Post one Event on ``obj`` (or count a repeat); logs instead of raising on failure."""
        event_type = "Warning" if warning else "Normal"
        meta = obj["metadata"]
        key: EventKey = (str(meta.get("uid", "")), event_type, reason, message[:MAX_MESSAGE])
        now = self.clock()
        self._prune(now)
        posted = self._posted.get(key)
        if posted is not None:
            posted.count += 1
            posted.seen = now
            if now - posted.written < self.repeat_interval:
                logger.debug(
                    "event %s repeated (x%d)",
                    reason,
                    posted.count,
                    extra=self._log_extra(obj, reason),
                )
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
                    logger.warning(
                        "could not update event %s: %s",
                        reason,
                        exc,
                        extra=self._log_extra(obj, reason),
                    )
                    return
                # The Event expired (TTL): post it afresh.
                del self._posted[key]
        created = await self.create(obj, warning=warning, reason=reason, message=message)
        if created is None:
            return
        self._posted[key] = _Posted(
            namespace=str(meta["namespace"]),
            name=str(created["metadata"]["name"]),
            count=1,
            written=now,
            seen=now,
        )

    async def normal(self, obj: Mapping[str, Any], reason: str, message: str) -> None:
        """:meth:`post` a Normal Event."""
        await self.post(obj, warning=False, reason=reason, message=message)

    async def warning(self, obj: Mapping[str, Any], reason: str, message: str) -> None:
        """:meth:`post` a Warning Event."""
        await self.post(obj, warning=True, reason=reason, message=message)


# -- once per state change (the operator) --------------------------------------------------


def _version(event: Mapping[str, Any]) -> int:
    version = str((event.get("metadata") or {}).get("resourceVersion") or "")
    return int(version) if version.isdigit() else -1


def _claim_events(
    events: Iterable[Mapping[str, Any]], component: str
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(claim uid, Event) of the Events ``component`` posted on claims."""
    for event in events:
        involved = event.get("involvedObject") or {}
        poster = (event.get("source") or {}).get("component") or event.get("reportingComponent")
        uid = str(involved.get("uid") or "")
        if poster == component and involved.get("kind") == "ResourceClaim" and uid:
            yield uid, event


def _said(event: Mapping[str, Any]) -> tuple[str, str]:
    return str(event.get("reason") or ""), str(event.get("message") or "")


def seed_field_selector(component: str) -> str:
    """The Events ``component`` posted on claims (``source`` is indexed by the apiserver)."""
    return f"involvedObject.kind=ResourceClaim,source={component}"


def last_posted(
    events: Iterable[Mapping[str, Any]], *, component: str
) -> dict[str, tuple[str, str]]:
    """Claim uid -> (reason, message) of the newest Event ``component`` posted on it.

    Newest by ``resourceVersion``: :class:`StateEvents` creates Events and never
    updates them, so it orders them as they were posted (timestamps have only
    second precision).
    """
    newest: dict[str, Mapping[str, Any]] = {}
    for uid, event in _claim_events(events, component):
        if uid not in newest or _version(event) > _version(newest[uid]):
            newest[uid] = event
    return {uid: _said(event) for uid, event in newest.items()}


def every_posted(
    events: Iterable[Mapping[str, Any]], *, component: str
) -> dict[str, set[tuple[str, str]]]:
    """Claim uid -> every (reason, message) ``component`` posted on it."""
    posted: dict[str, set[tuple[str, str]]] = {}
    for uid, event in _claim_events(events, component):
        posted.setdefault(uid, set()).add(_said(event))
    return posted


class StateEvents:
    """Posts through ``recorder``, skipping repeats of the last Event per claim."""

    def __init__(self, recorder: EventRecorder) -> None:
        self.recorder = recorder
        self._last: dict[str, tuple[str, str]] = {}
        self._once: dict[str, set[tuple[str, str]]] = {}
        self._background: set[asyncio.Task[bool]] = set()

    def seed(
        self,
        last: Mapping[str, tuple[str, str]],
        every: Mapping[str, set[tuple[str, str]]] | None = None,
    ) -> None:
        """Remember Events posted before a restart (claim uid -> (reason, message)).

        ``last`` is the newest per claim (:func:`last_posted`), ``every`` all of them
        (:func:`every_posted`), for :meth:`post_once`.
        """
        for uid, posted in last.items():
            self._last.setdefault(uid, posted)
        for uid, all_posted in (every or {}).items():
            self._once.setdefault(uid, set()).update(all_posted)

    def forget(self, uid: str) -> None:
        """Drop the memory of a claim that is gone."""
        self._last.pop(uid, None)
        self._once.pop(uid, None)

    async def post_once(
        self, claim: Mapping[str, Any], *, warning: bool, reason: str, message: str
    ) -> bool:
        """Post unless this claim ever got this (reason, message); True when posted.

        A note beside the claim's state: it does not become the claim's last Event,
        so the unchanged state Event is not posted again after it.
        """
        uid = str(claim["metadata"]["uid"])
        seen = self._once.setdefault(uid, set())
        if (reason, message) in seen:
            return False
        seen.add((reason, message))
        posted = await self._create(claim, warning=warning, reason=reason, message=message)
        if not posted:
            # Lost (the API refused it): let a later reconcile try again.
            seen.discard((reason, message))
        return posted

    def last(self, uid: str) -> tuple[str, str] | None:
        """The (reason, message) last posted for claim ``uid``."""
        return self._last.get(uid)

    def post_later(
        self, claim: Mapping[str, Any], *, warning: bool, reason: str, message: str
    ) -> None:
        """:meth:`post` in a background task (kept referenced until done)."""
        task = asyncio.create_task(
            self.post(claim, warning=warning, reason=reason, message=message)
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def post(
        self, claim: Mapping[str, Any], *, warning: bool, reason: str, message: str
    ) -> bool:
        """Post unless it repeats the claim's last Event; True when posted."""
        uid = str(claim["metadata"]["uid"])
        if self._last.get(uid) == (reason, message):
            return False
        self._last[uid] = (reason, message)
        posted = await self._create(claim, warning=warning, reason=reason, message=message)
        if not posted:
            self._last.pop(uid, None)
        return posted

    async def _create(
        self, claim: Mapping[str, Any], *, warning: bool, reason: str, message: str
    ) -> bool:
        created = await self.recorder.create(claim, warning=warning, reason=reason, message=message)
        return created is not None
