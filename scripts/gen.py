"""Generate everything that comes from the contracts in proto/, with pinned tools.

Outputs (each directory is owned by this script: `make gen` replaces it whole):
  gen/python/          _pb2.py, .pyi and _pb2_grpc.py for shopmesh.* and buf/validate
                       (the services' imports; packaged by clients/python)
  gen/descriptors/shopmesh.binpb
                       FileDescriptorSet with every import (google/api, google/rpc included)
                       that Envoy's gRPC-JSON transcoder loads
  gen/openapi/openapi.json
                       OpenAPI 3 of the REST surface (protoc-gen-openapi, finished by
                       shopmesh_gen.openapi from mesh/mesh.yaml); the edge serves it
  clients/go/shopmesh/ Go messages and gRPC clients (protoc-gen-go, protoc-gen-go-grpc)
  clients/typescript/src/gen/
                       TypeScript messages and service descriptors (protoc-gen-es)
  docs/api/index.md    reference docs from the proto comments (protoc-gen-doc)

protoc is grpcio-tools' (uv.lock). The Go plugins are built at exact versions from
the Go module proxy on first use, protoc-gen-es from the TypeScript client's npm
lock file (shopmesh_gen.generators). Third-party protos are never copied into the
repo: google/api and google/rpc come from the googleapis-common-protos package,
google/protobuf from grpcio-tools, and buf/validate/validate.proto from the
serialized descriptor embedded in the protovalidate wheel (which ships no .proto
source).

`--check` regenerates into a temporary directory and fails when the committed
output differs (generation drift). `--image` writes only a descriptor image with
source info (buf lint and buf breaking) and needs no plugin.
"""

from __future__ import annotations

import argparse
import ast
import filecmp
import importlib.util
import json
import shutil
import sys
import tempfile
from pathlib import Path

import yaml
from google.protobuf import descriptor_pb2, duration_pb2, field_mask_pb2, timestamp_pb2
from grpc_tools import protoc

from shopmesh_gen import generators, openapi
from shopmesh_platform.mesh import load_mesh

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
GO_CLIENT = ROOT / "clients" / "go"
TYPESCRIPT_GEN = ROOT / "clients" / "typescript" / "src" / "gen"
DOCS_API = ROOT / "docs" / "api"
# Repository directories that only this script writes.
GENERATED = ("gen", "clients/go/shopmesh", "clients/typescript/src/gen", "docs/api")
OPENAPI_FILE = "openapi.json"
OPENAPI_INFO = ("title=shopmesh", "version=v1")
VALIDATE_PROTO = "buf/validate/validate.proto"
# Buf's generated Go code for the same validate.proto (clients/go/go.mod pins its version).
VALIDATE_GO_PACKAGE = "buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate;validate"
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


def go_import_paths(module: str, files: list[str]) -> dict[str, str]:
    """Go import path (with package name) of every file protoc-gen-go must name: M options.

    The contracts carry no go_package (they are language-neutral); buf/validate maps to
    the Go module that Buf generates from the same file.
    """
    paths = {VALIDATE_PROTO: VALIDATE_GO_PACKAGE}
    for name in files:
        directory = name.rsplit("/", 1)[0]  # shopmesh/order/v1
        _, domain, version = directory.split("/")
        paths[name] = f"{module}/{directory};{domain}{version}"
    return paths


def go_module() -> str:
    first = (GO_CLIENT / "go.mod").read_text().splitlines()[0]
    return first.removeprefix("module ").strip()


def plugin_flags(name: str, binary: Path, out: Path, options: list[str]) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    flags = [f"--plugin=protoc-gen-{name}={binary}", f"--{name}_out={out}"]
    flags += [f"--{name}_opt={option}" for option in options]
    return flags


def image_files(image: Path) -> list[str]:
    """Every file in a descriptor set (with imports), in order."""
    return [f.name for f in descriptor_pb2.FileDescriptorSet.FromString(image.read_bytes()).file]


def write_image(path: Path, proto_root: Path, descriptor_in: str, *, with_source_info: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image_args = [descriptor_in, "--include_imports", f"--descriptor_set_out={path}"]
    if with_source_info:
        image_args.append("--include_source_info")
    run_protoc(proto_root, [*image_args, *contract_files(proto_root), *EXTRA_DESCRIPTOR_PROTOS])


def generate_python(root: Path, proto_root: Path, descriptor_in: str) -> None:
    python_out = root / "gen" / "python"
    python_out.mkdir(parents=True, exist_ok=True)
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


def generate_go(root: Path, proto_root: Path, descriptor_in: str) -> None:
    module = go_module()
    files = contract_files(proto_root)
    mappings = [f"M{name}={path}" for name, path in go_import_paths(module, files).items()]
    out = root / GO_CLIENT.relative_to(ROOT)
    flags = plugin_flags("go", generators.go_plugin(generators.PROTOC_GEN_GO), out, [f"module={module}", *mappings])
    flags += plugin_flags(
        "go-grpc", generators.go_plugin(generators.PROTOC_GEN_GO_GRPC), out, [f"module={module}", *mappings]
    )
    run_protoc(proto_root, [descriptor_in, *flags, *files])


def generate_typescript(root: Path, proto_root: Path, descriptor_in: str, image: Path) -> None:
    # The contracts and every import they need at run time except the well-known types,
    # which @bufbuild/protobuf ships (google/rpc for error details, buf/validate, google/api).
    files = [name for name in image_files(image) if not name.startswith("google/protobuf/")]
    out = root / TYPESCRIPT_GEN.relative_to(ROOT)
    flags = plugin_flags("es", generators.protoc_gen_es(), out, ["target=ts", "import_extension=js"])
    run_protoc(proto_root, [descriptor_in, *flags, *files])


def generate_openapi(root: Path, proto_root: Path, descriptor_in: str, scratch: Path) -> None:
    files = contract_files(proto_root)
    module = go_module()
    mappings = [f"M{name}={path}" for name, path in go_import_paths(module, files).items()]
    raw = scratch / "openapi"
    options = ["naming=json", "enum_type=string", "default_response=true", *OPENAPI_INFO, *mappings]
    flags = plugin_flags("openapi", generators.go_plugin(generators.PROTOC_GEN_OPENAPI), raw, options)
    run_protoc(proto_root, [descriptor_in, *flags, *[f for f in files if f.endswith("_service.proto")]])
    document = openapi.finish(yaml.safe_load((raw / "openapi.yaml").read_text()), load_mesh())
    out = root / "gen" / "openapi"
    out.mkdir(parents=True, exist_ok=True)
    (out / OPENAPI_FILE).write_text(json.dumps(document, indent=2) + "\n")


def generate_docs(root: Path, proto_root: Path, descriptor_in: str) -> None:
    out = root / DOCS_API.relative_to(ROOT)
    flags = plugin_flags("doc", generators.go_plugin(generators.PROTOC_GEN_DOC), out, ["markdown,index.md"])
    run_protoc(proto_root, [descriptor_in, *flags, *contract_files(proto_root)])


def generate(root: Path, *, proto_root: Path = PROTO_ROOT) -> None:
    """Everything `make gen` owns, written under `root` with the repository's layout."""
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        validate_set = scratch / "validate.binpb"
        write_validate_descriptor_set(validate_set)
        descriptor_in = f"--descriptor_set_in={validate_set}"
        image = root / "gen" / "descriptors" / "shopmesh.binpb"
        write_image(image, proto_root, descriptor_in, with_source_info=False)
        generate_python(root, proto_root, descriptor_in)
        generate_go(root, proto_root, descriptor_in)
        generate_typescript(root, proto_root, descriptor_in, image)
        generate_openapi(root, proto_root, descriptor_in, scratch)
        generate_docs(root, proto_root, descriptor_in)


def build_image(path: Path, proto_root: Path) -> None:
    """Only the descriptor image with source info (buf lint, buf breaking): no generators needed."""
    with tempfile.TemporaryDirectory() as scratch:
        validate_set = Path(scratch) / "validate.binpb"
        write_validate_descriptor_set(validate_set)
        write_image(path, proto_root, f"--descriptor_set_in={validate_set}", with_source_info=True)


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

    if not actual.is_dir():
        return ["missing from repo: the whole directory"]
    walk(filecmp.dircmp(str(expected), str(actual), ignore=["__pycache__"]), "")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if the committed output is stale")
    parser.add_argument("--image", type=Path, help="only write a lint image with source info to this file")
    parser.add_argument("--proto-root", type=Path, default=PROTO_ROOT, help="contracts to build (default: proto/)")
    args = parser.parse_args()

    if args.image:
        build_image(args.image.resolve(), args.proto_root.resolve())
        return 0
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        generate(scratch, proto_root=args.proto_root.resolve())
        if args.check:
            problems = [
                f"{line} (in {owned})" for owned in GENERATED for line in diff_trees(scratch / owned, ROOT / owned)
            ]
            if problems:
                print("gen: generated code is stale; run `make gen` and commit the result:", file=sys.stderr)
                for line in problems:
                    print(f"  {line}", file=sys.stderr)
                return 1
            print("gen: generated code is up to date")
            return 0
        for owned in GENERATED:
            shutil.rmtree(ROOT / owned, ignore_errors=True)
            shutil.copytree(scratch / owned, ROOT / owned)
    print("gen: wrote " + ", ".join(GENERATED))
    return 0


if __name__ == "__main__":
    sys.exit(main())
