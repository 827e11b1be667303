"""Operator configuration: command-line flags, each with an environment fallback.

Flags win over environment variables; environment variables win over defaults, so
a Deployment can configure the operator through ``env`` alone.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field

from sriov_dra.constants import DRIVER_NAME
from sriov_dra.leader_election import ElectionTiming
from sriov_dra.vfconfig import parse_nad_namespaces

ENV_PREFIX = "SRIOV_DRA_OPERATOR_"


def _env(name: str, default: str) -> str:
    return os.environ.get(ENV_PREFIX + name, default)


@dataclass(frozen=True)
class OperatorSettings:
    """Everything the operator's behaviour depends on besides the cluster's objects."""

    driver: str = DRIVER_NAME
    nad_namespaces: frozenset[str] = field(default_factory=frozenset)
    """Namespaces other than the claim's own from which a VfConfig may name a NAD."""
    metrics_port: int = 9090
    """Port of ``/metrics`` and the inventory page (``/``, ``/inventory.json``); 0 disables it."""
    health_port: int = 8080
    """Liveness endpoint port (``/healthz``); 0 disables it."""
    bind_address: str = "0.0.0.0"
    kubeconfig: str = ""
    """Empty: in-cluster service account, else KUBECONFIG / ~/.kube/config."""
    workers: int = 64
    """Concurrent claim reconcilers; allocation decisions are serialized regardless."""
    yield_seconds: float = 30.0
    """How long to leave a claim alone after someone else cleared our allocation."""
    log_level: str = "INFO"
    leader_elect: bool = False
    """Take part in leader election: act only while holding the Lease (several replicas)."""
    lease_namespace: str = "sriov-dra"
    lease_name: str = "sriov-dra-operator"
    election: ElectionTiming = field(default_factory=ElectionTiming)

    @property
    def liveness_endpoint(self) -> str | None:
        """kopf's liveness URL, or None when disabled."""
        if not self.health_port:
            return None
        return f"http://{self.bind_address}:{self.health_port}/healthz"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the operator's flags to ``parser``."""
    parser.add_argument(
        "--driver",
        default=_env("DRIVER", DRIVER_NAME),
        help="DRA driver name whose claims this operator allocates "
        f"(env {ENV_PREFIX}DRIVER; default %(default)s)",
    )
    parser.add_argument(
        "--nad-namespaces",
        default=_env("NAD_NAMESPACES", ""),
        help="comma-separated namespaces from which any claim may use a "
        f"NetworkAttachmentDefinition (env {ENV_PREFIX}NAD_NAMESPACES; default: none, "
        "a claim may only use NADs of its own namespace)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=int(_env("METRICS_PORT", "9090")),
        help="port of Prometheus /metrics and the inventory page / and /inventory.json, "
        f"0 disables (env {ENV_PREFIX}METRICS_PORT; default %(default)s)",
    )
    parser.add_argument(
        "--health-port",
        type=int,
        default=int(_env("HEALTH_PORT", "8080")),
        help=f"liveness /healthz port, 0 disables (env {ENV_PREFIX}HEALTH_PORT; "
        "default %(default)s)",
    )
    parser.add_argument(
        "--bind-address",
        default=_env("BIND_ADDRESS", "0.0.0.0"),
        help="address of the metrics and health endpoints (default %(default)s)",
    )
    parser.add_argument(
        "--kubeconfig",
        default=_env("KUBECONFIG", os.environ.get("KUBECONFIG", "")),
        help="kubeconfig file (env KUBECONFIG; default: in-cluster service account)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=int(_env("WORKERS", "64")),
        help="concurrent claim reconcilers (default %(default)s)",
    )
    parser.add_argument(
        "--yield-seconds",
        type=float,
        default=float(_env("YIELD_SECONDS", "30")),
        help="back-off after the scheduler cleared one of our allocations (default %(default)s)",
    )
    parser.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=_env("LEADER_ELECT", "false").lower() in ("1", "true", "yes"),
        help="act only while holding a coordination.k8s.io Lease, so several replicas can run "
        f"(env {ENV_PREFIX}LEADER_ELECT; default %(default)s)",
    )
    parser.add_argument(
        "--lease-namespace",
        default=_env("LEASE_NAMESPACE", os.environ.get("POD_NAMESPACE", "sriov-dra")),
        help="namespace of the leader-election Lease (env POD_NAMESPACE; default %(default)s)",
    )
    parser.add_argument(
        "--lease-name",
        default=_env("LEASE_NAME", "sriov-dra-operator"),
        help="name of the leader-election Lease (default %(default)s)",
    )
    parser.add_argument(
        "--lease-duration",
        type=float,
        default=float(_env("LEASE_DURATION", "15")),
        help="seconds a standby waits after the leader's last renewal (default %(default)s)",
    )
    parser.add_argument(
        "--renew-deadline",
        type=float,
        default=float(_env("RENEW_DEADLINE", "10")),
        help="seconds the leader keeps acting without renewing (default %(default)s)",
    )
    parser.add_argument(
        "--retry-period",
        type=float,
        default=float(_env("RETRY_PERIOD", "2")),
        help="seconds between lease attempts and renewals (default %(default)s)",
    )
    parser.add_argument(
        "--log-level",
        default=_env("LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level (default %(default)s)",
    )


def from_args(args: argparse.Namespace) -> OperatorSettings:
    """Settings from parsed flags; raises ``ValueError`` naming a bad flag."""
    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    for flag, port in (("--metrics-port", args.metrics_port), ("--health-port", args.health_port)):
        if not 0 <= port <= 65535:
            raise ValueError(f"{flag} must be 0..65535, got {port}")
    return OperatorSettings(
        driver=args.driver,
        nad_namespaces=parse_nad_namespaces(args.nad_namespaces),
        metrics_port=args.metrics_port,
        health_port=args.health_port,
        bind_address=args.bind_address,
        kubeconfig=args.kubeconfig,
        workers=args.workers,
        yield_seconds=args.yield_seconds,
        log_level=args.log_level,
        leader_elect=args.leader_elect,
        lease_namespace=args.lease_namespace,
        lease_name=args.lease_name,
        election=ElectionTiming(
            lease_duration=args.lease_duration,
            renew_deadline=args.renew_deadline,
            retry_period=args.retry_period,
        ),
    )
