"""Kubernetes Events on claims, posted once per state change.

``kubectl describe resourceclaim`` lists core/v1 Events whose involvedObject is
the claim. A claim that waits for a NAD is reconciled many times; it must not
get an Event each time, so the last (reason, message) posted per claim is
remembered and an identical one is skipped. The memory outlives a restart: at
start the operator lists the Events it posted before (:func:`last_posted`) and
seeds it, so a waiting claim whose state did not change gets no second Event.

Some Events are notes beside the claim's state rather than the state itself (a
NAD whose chained plugins are ignored, while the claim waits for a VF): those
are posted with :meth:`EventRecorder.post_once`, at most once per claim and
message, also across restarts (every Event posted before is remembered).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, cast

from kubernetes_asyncio import client

log = logging.getLogger(__name__)

COMPONENT = "sriov-dra-operator"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_body(
    claim: Mapping[str, Any], *, type_: str, reason: str, message: str, instance: str
) -> dict[str, Any]:
    """The core/v1 Event for ``claim`` (messages cut to the API's 1 KiB)."""
    meta = claim["metadata"]
    now = _now()
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": claim.get("apiVersion", "resource.k8s.io/v1"),
            "kind": "ResourceClaim",
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta.get("resourceVersion", ""),
        },
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": instance,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


SEED_FIELD_SELECTOR = f"involvedObject.kind=ResourceClaim,source={COMPONENT}"
"""The Events this operator posted on claims (``source`` is indexed by the apiserver)."""


def _version(event: Mapping[str, Any]) -> int:
    version = str((event.get("metadata") or {}).get("resourceVersion") or "")
    return int(version) if version.isdigit() else -1


def _claim_events(events: Iterable[Mapping[str, Any]]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(claim uid, Event) of the Events this operator posted on claims."""
    for event in events:
        involved = event.get("involvedObject") or {}
        component = (event.get("source") or {}).get("component") or event.get("reportingComponent")
        uid = str(involved.get("uid") or "")
        if component == COMPONENT and involved.get("kind") == "ResourceClaim" and uid:
            yield uid, event


def _said(event: Mapping[str, Any]) -> tuple[str, str]:
    return str(event.get("reason") or ""), str(event.get("message") or "")


def last_posted(events: Iterable[Mapping[str, Any]]) -> dict[str, tuple[str, str]]:
    """Claim uid -> (reason, message) of the newest Event this operator posted on it.

    Newest by ``resourceVersion``: we create Events and never update them, so it
    orders them as they were posted (timestamps have only second precision).
    """
    newest: dict[str, Mapping[str, Any]] = {}
    for uid, event in _claim_events(events):
        if uid not in newest or _version(event) > _version(newest[uid]):
            newest[uid] = event
    return {uid: _said(event) for uid, event in newest.items()}


def every_posted(events: Iterable[Mapping[str, Any]]) -> dict[str, set[tuple[str, str]]]:
    """Claim uid -> every (reason, message) this operator posted on it."""
    posted: dict[str, set[tuple[str, str]]] = {}
    for uid, event in _claim_events(events):
        posted.setdefault(uid, set()).add(_said(event))
    return posted


class EventRecorder:
    """Posts Events, skipping repeats of the last one per claim."""

    def __init__(self, api: client.ApiClient, *, instance: str) -> None:
        self._core = client.CoreV1Api(api)
        self._instance = instance
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
        body = event_body(
            claim,
            type_="Warning" if warning else "Normal",
            reason=reason,
            message=message,
            instance=self._instance,
        )
        try:
            await self._core.create_namespaced_event(
                claim["metadata"]["namespace"], cast(Any, body)
            )
        except client.ApiException as exc:
            # An Event is an explanation, not state: losing one must not stop reconciling.
            involved = body["involvedObject"]
            log.warning(
                "could not post event",
                extra={
                    "claim": f"{involved['namespace']}/{involved['name']}",
                    "uid": str(claim["metadata"]["uid"]),
                    "reason": reason,
                    "status": exc.status,
                },
            )
            return False
        return True
