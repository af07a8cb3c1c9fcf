"""Generated google.protobuf modules for Triton's protos (made by scripts/gen_proto.sh from proto/).

Rules: nothing here is hand-written except POOL. Every *_pb2 module adds its file to POOL, a private
DescriptorPool, so tritonclient's identically named files in the default pool never clash with ours.
"""
from google.protobuf import descriptor_pool

POOL = descriptor_pool.DescriptorPool()
