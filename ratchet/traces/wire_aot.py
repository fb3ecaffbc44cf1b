"""The span decoder (ratchet.traces.wire) compiled ahead of time into an extension module, so that a receiver
loads machine code without numba: numba's compiler, loaded to read its own cache, held about 130 MB of a
receiver's ~245 MB at rest (measured: 56 MB to import it, 70 MB more to load the cached decoder).

``make`` builds it at install (``python -m ratchet.traces.wire_aot``, with numba's ``pycc`` and the C
compiler, about a minute) beside this file. Its name carries a digest of the decoder's source files, so a
module built from other sources is never loaded: ``load`` then answers None and the decoder is compiled by
numba at run time, as before (ratchet.traces.columnar decides).

The exported functions take and return plain tuples of arrays: an extension module that returned the
decoder's named tuples would import their module, and with it numba, to make them.
"""

from __future__ import annotations

import hashlib
import importlib
import sys
import sysconfig
from pathlib import Path
from types import ModuleType
from typing import Any

_HERE = Path(__file__).resolve().parent
# Every file whose change changes the machine code.
_SOURCES = (_HERE / "wire.py", _HERE / "wire_layout.py", _HERE.parent / "compiled_memory.py", Path(__file__))
_PREFIX = "_wire_compiled_"


def module_name() -> str:
    """The extension module's name for the decoder's sources as they are now."""
    digest = hashlib.sha256()
    for source in _SOURCES:
        digest.update(source.read_bytes())
    return _PREFIX + digest.hexdigest()[:16]


def load() -> ModuleType | None:
    """The decoder compiled ahead of time from the sources as they are, or None when it was not built."""
    name = f"ratchet.traces.{module_name()}"
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


# The exported signatures, in numba's notation: arrays are C-contiguous (``::1``), as the callers make them.
_FRAME = "Tuple((b1, i8[::1], i8[::1], i8[::1], i8[::1], i8[::1]))(u1[::1])"
_SPANS = (
    "Tuple((b1[::1], u1[::1], u1[::1], u1[::1], i8[:, ::1], i8[:, ::1], u1[::1], i8[::1], i8[:, ::1], b1[:, ::1]))"
    "(i8[::1], i8[::1], i8[::1], i8[::1], u1[::1], i8[::1], i8[::1], i8[::1], i8[::1], b1[::1])"
)


def build(folder: Path = _HERE) -> Path:
    """Compile the decoder into ``folder`` (this package's folder by default); older builds there are removed.
    Raises when numba's AOT compiler or the C compiler cannot."""
    from numba.pycc import CC

    from ratchet.traces import wire
    from ratchet.traces.wire_layout import PromotedKeys

    name = module_name()
    compiler = CC(name)
    compiler.output_dir = str(folder)
    compiler.target_cpu = "host"  # built on the machine that runs it, as numba's own JIT would
    compiler.verbose = False

    @compiler.export("frame", _FRAME)
    def frame(buf: Any) -> Any:
        f = wire.frame(buf)
        return f.ok, f.starts, f.ends, f.resource_of, f.service_at, f.service_length

    @compiler.export("decode_spans", _SPANS)
    def decode_spans(
        bodies: Any,
        body_of: Any,
        starts: Any,
        ends: Any,
        data: Any,
        offsets: Any,
        by_hash: Any,
        column: Any,
        rank: Any,
        numeric: Any,
    ) -> Any:
        s = wire.decode_spans(
            bodies, body_of, starts, ends, PromotedKeys(data, offsets, by_hash, column, rank, numeric)
        )
        return (
            s.odd,
            s.trace_ids,
            s.span_ids,
            s.parent_ids,
            s.numbers,
            s.integers,
            s.text,
            s.region,
            s.offsets,
            s.valid,
        )

    compiler.compile()
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    built = folder / f"{name}{suffix}"
    for old in folder.glob(f"{_PREFIX}*"):
        if old != built:
            old.unlink()
    return built


if __name__ == "__main__":
    print(f"span decoder compiled ahead of time: {build().name}", file=sys.stderr)
