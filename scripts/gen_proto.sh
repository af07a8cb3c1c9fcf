#!/usr/bin/env bash
# Regenerate triton_asyncio/pb/*_pb2.py (google.protobuf messages, no grpc stubs) from proto/.
#
# Why a private descriptor pool: tritonclient registers the very same files (model_config.proto,
# grpc_service.proto, package inference) in protobuf's *default* pool, and tests import both. The
# default pool only tolerates that while both serialized descriptors are byte-identical; any other
# tritonclient release (or grpcio-health-checking for grpc.health.v1) makes the second import fail
# with a duplicate-file/duplicate-symbol error. So the generated modules are rewritten to add their
# files to triton_asyncio.pb.POOL, a DescriptorPool of their own: no clash whatever else is imported.
# Consequence: our message classes are distinct from tritonclient's; cross over via bytes
# (SerializeToString / FromString), never by passing message objects between the two.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
OUT=triton_asyncio/pb

"$PY" -m grpc_tools.protoc -Iproto --python_out="$OUT" \
    proto/model_config.proto proto/grpc_service.proto proto/health.proto

for f in "$OUT"/model_config_pb2.py "$OUT"/grpc_service_pb2.py "$OUT"/health_pb2.py; do
    # package-relative imports between generated modules
    sed -i -E 's/^import ([a-z_]+_pb2) as /from . import \1 as /' "$f"
    # our own pool instead of the process-wide default one (see above)
    sed -i -E 's/_descriptor_pool\.Default\(\)\.AddSerializedFile\(/_pb_pool.AddSerializedFile(/' "$f"
    sed -i -E 's/^(from google\.protobuf\.internal import builder as _builder)$/\1\nfrom . import POOL as _pb_pool/' "$f"
    grep -q '_pb_pool.AddSerializedFile(' "$f" || { echo "gen_proto: pool rewrite failed in $f" >&2; exit 1; }
done
echo "generated: $(ls "$OUT"/*_pb2.py | tr '\n' ' ')"
