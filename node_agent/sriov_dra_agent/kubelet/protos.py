"""The generated kubelet gRPC modules (DRA v1, v1beta1, DRA health, plugin registration).

protobuf and grpc ship no type stubs, so the generated code is untyped;
loading it by name keeps mypy out of it. Both our plugin (the server side) and
the dev cluster's node emulation (the kubelet side) import them from here.
"""

from __future__ import annotations

import importlib
from typing import Any


def _generated(module: str) -> Any:
    return importlib.import_module(f"sriov_dra_agent.proto.{module}")


dra_v1_pb2 = _generated("dra_v1_pb2")
dra_v1_pb2_grpc = _generated("dra_v1_pb2_grpc")
dra_v1beta1_pb2 = _generated("dra_v1beta1_pb2")
dra_v1beta1_pb2_grpc = _generated("dra_v1beta1_pb2_grpc")
dra_health_v1alpha1_pb2 = _generated("dra_health_v1alpha1_pb2")
dra_health_v1alpha1_pb2_grpc = _generated("dra_health_v1alpha1_pb2_grpc")
pluginregistration_v1_pb2 = _generated("pluginregistration_v1_pb2")
pluginregistration_v1_pb2_grpc = _generated("pluginregistration_v1_pb2_grpc")
