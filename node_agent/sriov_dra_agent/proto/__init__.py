"""Generated gRPC modules for the kubelet's DRA (v1, v1beta1) and plugin registration APIs.

The .proto files are transcriptions of kubernetes' kubelet API protos without
gogoproto options; ``regenerate.sh`` rebuilds the committed ``*_pb2*`` modules.
"""
