"""Generate Python code for protos/ into raftplane/wire/ (run via `make protos`)."""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
OUT = ROOT / "raftplane" / "wire"


def generate(out_dir: Path) -> list[Path]:
    """Compile every .proto under protos/ into flat modules in out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for proto in sorted(PROTOS.rglob("*.proto")):
        rel = proto.relative_to(PROTOS)
        code = protoc.main(
            ["protoc", f"-I{PROTOS}", f"--python_out={out_dir}", f"--pyi_out={out_dir}", str(rel)]
        )
        if code != 0:
            raise SystemExit(f"protoc failed on {rel}")
        # protoc mirrors the package path; flatten to raftplane/wire/<name>_pb2.py.
        for suffix in ("_pb2.py", "_pb2.pyi"):
            generated = out_dir / rel.parent / (proto.stem + suffix)
            target = out_dir / (proto.stem + suffix)
            generated.replace(target)
            written.append(target)
        top = out_dir / rel.parts[0]
        for d in sorted(top.rglob("*"), reverse=True):
            d.rmdir()
        top.rmdir()
    return written


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    for path in generate(out):
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
