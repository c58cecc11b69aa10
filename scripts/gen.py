"""Generate code from the contracts in proto/ with the pinned tools of the lock file.

Outputs, all under one root (default gen/):
  python/      _pb2.py, .pyi and _pb2_grpc.py for shopmesh.* and buf/validate
  descriptors/shopmesh.binpb
               FileDescriptorSet with every import (google/api, google/rpc included)
               that Envoy's gRPC-JSON transcoder loads.

Third-party protos are never copied into the repo: google/api and google/rpc come
from the googleapis-common-protos package, google/protobuf from grpcio-tools, and
buf/validate/validate.proto from the serialized descriptor embedded in the
protovalidate wheel (which ships no .proto source).

`--check` regenerates into a temporary directory and fails when the committed
output differs (generation drift).
"""

from __future__ import annotations

import argparse
import ast
import filecmp
import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2, duration_pb2, field_mask_pb2, timestamp_pb2
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
DEFAULT_OUT = ROOT / "gen"
VALIDATE_PROTO = "buf/validate/validate.proto"
# google.rpc protos are pulled into the Envoy descriptor so error details print as JSON.
EXTRA_DESCRIPTOR_PROTOS = ("google/rpc/status.proto", "google/rpc/error_details.proto")


def package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"gen: package {module!r} is not installed; run `make deps`")
    return Path(next(iter(spec.submodule_search_locations)))


def validate_proto_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """Read buf/validate/validate.proto's descriptor out of the protovalidate wheel."""
    source = package_dir("protovalidate") / "_gen" / "buf" / "validate" / "validate_pb.py"
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "file_desc":
            serialized = ast.literal_eval(node.args[0])
            descriptor = descriptor_pb2.FileDescriptorProto.FromString(serialized)
            if descriptor.name != VALIDATE_PROTO:
                break
            return descriptor
    raise SystemExit(f"gen: no {VALIDATE_PROTO} descriptor found in {source}")


def write_validate_descriptor_set(path: Path) -> None:
    fds = descriptor_pb2.FileDescriptorSet()
    for module in (descriptor_pb2, duration_pb2, field_mask_pb2, timestamp_pb2):
        file_proto = fds.file.add()
        module.DESCRIPTOR.CopyToProto(file_proto)
    fds.file.append(validate_proto_descriptor())
    path.write_bytes(fds.SerializeToString(deterministic=True))


def contract_files(proto_root: Path) -> list[str]:
    return sorted(str(p.relative_to(proto_root)) for p in proto_root.rglob("*.proto"))


def run_protoc(proto_root: Path, args: list[str]) -> None:
    googleapis = package_dir("google.api").parent.parent
    well_known = package_dir("grpc_tools") / "_proto"
    argv = ["grpc_tools.protoc", f"-I{proto_root}", f"-I{googleapis}", f"-I{well_known}", *args]
    if protoc.main(argv) != 0:
        raise SystemExit("gen: protoc failed: " + " ".join(argv[1:]))


def generate(out: Path, *, proto_root: Path = PROTO_ROOT, with_source_info: bool = False) -> None:
    python_out = out / "python"
    descriptor_out = out / "descriptors"
    python_out.mkdir(parents=True, exist_ok=True)
    descriptor_out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        validate_set = Path(scratch) / "validate.binpb"
        write_validate_descriptor_set(validate_set)
        descriptor_in = f"--descriptor_set_in={validate_set}"
        files = contract_files(proto_root)
        run_protoc(
            proto_root,
            [
                descriptor_in,
                f"--python_out={python_out}",
                f"--pyi_out={python_out}",
                f"--grpc_python_out={python_out}",
                *files,
            ],
        )
        run_protoc(proto_root, [descriptor_in, f"--python_out={python_out}", f"--pyi_out={python_out}", VALIDATE_PROTO])
        image_args = [
            descriptor_in,
            "--include_imports",
            f"--descriptor_set_out={descriptor_out / 'shopmesh.binpb'}",
        ]
        if with_source_info:
            image_args.append("--include_source_info")
        run_protoc(proto_root, [*image_args, *files, *EXTRA_DESCRIPTOR_PROTOS])


def diff_trees(expected: Path, actual: Path) -> list[str]:
    """Relative paths that differ, are missing, or are extra between two trees."""
    problems: list[str] = []

    def walk(cmp: filecmp.dircmp[str], prefix: str) -> None:
        problems.extend(f"missing from repo: {prefix}{name}" for name in cmp.left_only)
        problems.extend(f"not generated: {prefix}{name}" for name in cmp.right_only)
        _, mismatch, errors = filecmp.cmpfiles(cmp.left, cmp.right, cmp.common_files, shallow=False)
        problems.extend(f"differs: {prefix}{name}" for name in mismatch + errors)
        for name, sub in cmp.subdirs.items():
            walk(sub, f"{prefix}{name}/")

    walk(filecmp.dircmp(str(expected), str(actual), ignore=["__pycache__"]), "")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output root (default: gen/)")
    parser.add_argument("--check", action="store_true", help="fail if the committed output is stale")
    parser.add_argument("--image", type=Path, help="only write a lint image with source info to this file")
    parser.add_argument("--proto-root", type=Path, default=PROTO_ROOT, help="contracts to build (default: proto/)")
    args = parser.parse_args()

    if args.image:
        with tempfile.TemporaryDirectory() as scratch:
            generate(Path(scratch), proto_root=args.proto_root.resolve(), with_source_info=True)
            args.image.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(scratch) / "descriptors" / "shopmesh.binpb", args.image)
        return 0
    if args.check:
        with tempfile.TemporaryDirectory() as scratch:
            generate(Path(scratch))
            problems = diff_trees(Path(scratch), args.out)
        if problems:
            print("gen: generated code is stale; run `make gen` and commit the result:", file=sys.stderr)
            for line in problems:
                print(f"  {line}", file=sys.stderr)
            return 1
        print("gen: generated code is up to date")
        return 0
    shutil.rmtree(args.out, ignore_errors=True)
    generate(args.out)
    print(f"gen: wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
