"""Whether a Node still exists, asked of the apiserver itself, and whether we may watch Nodes.

The watch-fed cache says when a Node went; before the operator acts on that
irreversibly (releasing a deleted claim's VF without its node agent) it asks
the apiserver directly, so a lagging watch can never release a VF whose node
is alive. Nodes are watched only when RBAC allows it (kopf gives up on the
whole operator when a watch stays forbidden); without it deleted claims simply
wait for their node agent.
"""

from __future__ import annotations

import logging
from typing import Any

from kubernetes_asyncio import client

log = logging.getLogger(__name__)
NODE_VERBS = ("get", "list", "watch")
"""What releasing a removed node's claims needs: watch to notice, get to confirm."""


async def may_watch_nodes(api: client.ApiClient) -> bool:
    """The operator's identity may get, list and watch Nodes (SelfSubjectAccessReviews)."""
    authz = client.AuthorizationV1Api(api)
    for verb in NODE_VERBS:
        body: Any = {"spec": {"resourceAttributes": {"verb": verb, "resource": "nodes"}}}
        try:
            review = await authz.create_self_subject_access_review(body)
        except client.ApiException as exc:
            log.warning("cannot ask whether Nodes may be watched", extra={"http": exc.status})
            return False
        if not review.status.allowed:
            return False
    return True


class NodeLookup:
    """``GET /api/v1/nodes/<name>``, answered as exists / gone / cannot tell."""

    def __init__(self, api: client.ApiClient) -> None:
        self._core = client.CoreV1Api(api)

    async def exists(self, name: str) -> bool | None:
        """True or False; None when the operator may not read Nodes (HTTP 403)."""
        try:
            await self._core.read_node(name)
        except client.ApiException as exc:
            if exc.status == 404:
                return False
            if exc.status == 403:
                return None
            raise
        return True
