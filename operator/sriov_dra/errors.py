"""Error types of the core.

Every error names the field or object at fault and the fix. The shells show
them as they are: ``reason`` is the Kubernetes Event reason (and the agent's
``status.devices`` condition reason), :meth:`SriovDraError.describe` the Event
message, the condition message and the error the kubelet reports for a claim.
Whether and when to try again is the shell's decision (the operator waits for
the change that may help: a NAD, a freed VF, a new DeviceClass).
"""

from __future__ import annotations


class SriovDraError(Exception):
    """Base class: a message for humans, the field at fault and how to fix it."""

    reason: str = "Error"
    """CamelCase Kubernetes Event reason."""

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
    """The claim's or class's opaque VfConfig is malformed."""

    reason = "InvalidVfConfig"


class NadNotFound(SriovDraError):
    """The referenced NetworkAttachmentDefinition does not exist (yet)."""

    reason = "NetworkAttachmentDefinitionNotFound"


class InvalidNad(SriovDraError):
    """The NetworkAttachmentDefinition's CNI config is not a valid sriov config.

    The user can fix the NAD; the claim then proceeds.
    """

    reason = "InvalidNetworkAttachmentDefinition"


class DeviceClassNotFound(SriovDraError):
    """A DeviceClass the claim names does not exist (yet)."""

    reason = "DeviceClassNotFound"


class NoDeviceAvailable(SriovDraError):
    """No VF satisfies the claim now (VFs may get freed or published)."""

    reason = "NoDeviceAvailable"


class SelectorError(SriovDraError):
    """A CEL selector failed to compile or evaluate."""

    reason = "InvalidSelector"


class AllocationConflict(SriovDraError):
    """Two claims hold the same device."""

    reason = "AllocationConflict"


class DeviceBusy(SriovDraError):
    """A VF is already prepared or attached for another claim."""

    reason = "DeviceBusy"


class IpamError(SriovDraError):
    """The IPAM plugin failed (no address left, bad config, plugin missing).

    ``code`` is the CNI error code the plugin returned (0 when it did not answer
    with a CNI error).
    """

    reason = "IpamFailed"

    def __init__(self, message: str, *, field: str = "", fix: str = "", code: int = 0) -> None:
        self.code = code
        super().__init__(message, field=field, fix=fix)


class AttachError(SriovDraError):
    """Moving or configuring a VF in a pod's network namespace failed."""

    reason = "AttachFailed"


class NetnsNotFound(AttachError):
    """The pod's network namespace does not exist (the pod is gone)."""

    reason = "NetnsNotFound"


class VfProgrammingError(SriovDraError):
    """The kernel refused a VF setting or a driver binding."""

    reason = "VfProgrammingFailed"


class WatchFailed(SriovDraError):
    """A watch stream ended with an ERROR event or a line that is no watch event.

    ``status`` is the HTTP code of the apiserver's ``Status`` (410: the
    resourceVersion is too old), None when the line could not be decoded at all.
    """

    reason = "WatchFailed"

    def __init__(
        self, message: str, *, field: str = "", fix: str = "", status: int | None = None
    ) -> None:
        self.status = status
        super().__init__(message, field=field, fix=fix)


class InvalidSetting(SriovDraError):
    """A command-line flag (or its environment variable) has a value we cannot run with."""

    reason = "InvalidSetting"


class InvalidResourcePolicy(SriovDraError):
    """A SriovResourcePolicy cannot be applied (bad selector, unknown linkType, ...).

    The policy is left out of advertisement; the other policies still apply.
    """

    reason = "InvalidSriovResourcePolicy"


class InvalidDeviceAttributes(SriovDraError):
    """A DeviceAttributes object carries an attribute that cannot be published."""

    reason = "InvalidDeviceAttributes"
