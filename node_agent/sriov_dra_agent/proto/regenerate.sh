#!/bin/sh
# Regenerate the committed *_pb2.py, *_pb2.pyi and *_pb2_grpc.py from the
# .proto files here, with the repo's grpc_tools (its version must not exceed
# the grpcio/protobuf runtime pinned in pyproject.toml).
#
# protoc runs from the node_agent/ source root so that the generated modules
# import each other as `sriov_dra_agent.proto.<name>_pb2`, not as top-level
# modules, and the descriptor file names stay unique across v1 and v1beta1.
set -eu
proto_dir=$(cd "$(dirname "$0")" && pwd)
source_root=$(cd "$proto_dir/../.." && pwd)
python=${PYTHON:-$source_root/../.venv/bin/python}
cd "$source_root"
"$python" -m grpc_tools.protoc -I . \
  --python_out=. --pyi_out=. --grpc_python_out=. \
  sriov_dra_agent/proto/*.proto
