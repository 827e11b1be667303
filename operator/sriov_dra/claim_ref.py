"""The one reference to a ResourceClaim the driver passes around: namespace, name and UID.

The kubelet names a claim this way in NodePrepareResources, the agent keeps it
in each VF's record on disk, and the test world's kubelet stand-in sends it.
Positional order is the kubelet's (namespace, name, uid); on disk it is a JSON
object keyed by field name, so records written before this type still load.
"""

from __future__ import annotations

from pydantic import ConfigDict
from pydantic.dataclasses import dataclass

from sriov_dra.naming import claim_ref


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class ClaimRef:
    """A claim by namespace, name and UID (the UID tells a re-created claim apart)."""

    namespace: str
    name: str
    uid: str

    def ref(self) -> str:
        """``namespace/name``, as logs and Events name a claim."""
        return claim_ref(self.namespace, self.name)

    def __str__(self) -> str:
        return f"{self.ref()} ({self.uid})"
