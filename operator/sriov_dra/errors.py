"""Error types of the core.

Every error names the field or object at fault and the fix. ``retryable`` says
whether the same input can succeed later (a NAD that may still appear, a pool
that may free up) or never will (a malformed VfConfig). Shells map these to
kopf.TemporaryError / kopf.PermanentError, Kubernetes Events and gRPC errors.
"""

from __future__ import annotations


class SriovDraError(Exception):
    """Base class: a message for humans, the field at fault and how to fix it."""

    reason: str = "Error"
    """CamelCase Kubernetes Event reason."""
    retryable: bool = False

    def __init__(self, message: str, *, field: str = "", fix: str = "") -> None:
        self.message = message
        self.field = field
        self.fix = fix
        super().__init__(self.describe())

    def describe(self) -> str:
        """One line: what is wrong, where, and what to do about it."""
        text = f"{self.field}: {self.message}" if self.field else self.message
        return f"{text}; fix: {self.fix}" if self.fix else text


class InvalidVfConfig(SriovDraError):
    """The claim's or class's opaque VfConfig is malformed. Permanent."""

    reason = "InvalidVfConfig"


class NadNotFound(SriovDraError):
    """The referenced NetworkAttachmentDefinition does not exist (yet). Retryable."""

    reason = "NetworkAttachmentDefinitionNotFound"
    retryable = True


class InvalidNad(SriovDraError):
    """The NetworkAttachmentDefinition's CNI config is not a valid sriov config.

    Retryable: the user can fix the NAD and the claim then proceeds.
    """

    reason = "InvalidNetworkAttachmentDefinition"
    retryable = True


class DeviceClassNotFound(SriovDraError):
    """A DeviceClass the claim names does not exist (yet). Retryable: it may be created."""

    reason = "DeviceClassNotFound"
    retryable = True


class NoDeviceAvailable(SriovDraError):
    """No VF satisfies the claim now. Retryable: VFs get freed or published."""

    reason = "NoDeviceAvailable"
    retryable = True


class SelectorError(SriovDraError):
    """A CEL selector failed to compile or evaluate. Permanent for that claim."""

    reason = "InvalidSelector"


class AllocationConflict(SriovDraError):
    """Two claims hold the same device."""

    reason = "AllocationConflict"
    retryable = True


class DeviceBusy(SriovDraError):
    """A VF is already prepared or attached for another claim. Retryable."""

    reason = "DeviceBusy"
    retryable = True


class IpamError(SriovDraError):
    """The IPAM plugin failed (no address left, bad config, plugin missing).

    Retryable: addresses get freed and NADs get fixed. ``code`` is the CNI error
    code the plugin returned (0 when it did not answer with a CNI error).
    """

    reason = "IpamFailed"
    retryable = True

    def __init__(self, message: str, *, field: str = "", fix: str = "", code: int = 0) -> None:
        self.code = code
        super().__init__(message, field=field, fix=fix)


class AttachError(SriovDraError):
    """Moving or configuring a VF in a pod's network namespace failed. Retryable."""

    reason = "AttachFailed"
    retryable = True


class NetnsNotFound(AttachError):
    """The pod's network namespace does not exist (the pod is gone). Permanent for that pod."""

    reason = "NetnsNotFound"
    retryable = False


class VfProgrammingError(SriovDraError):
    """The kernel refused a VF setting or a driver binding. Retryable."""

    reason = "VfProgrammingFailed"
    retryable = True


class WatchFailed(SriovDraError):
    """A watch stream ended with an ERROR event or a line that is no watch event. Retryable.

    ``status`` is the HTTP code of the apiserver's ``Status`` (410: the
    resourceVersion is too old), None when the line could not be decoded at all.
    """

    reason = "WatchFailed"
    retryable = True

    def __init__(
        self, message: str, *, field: str = "", fix: str = "", status: int | None = None
    ) -> None:
        self.status = status
        super().__init__(message, field=field, fix=fix)
