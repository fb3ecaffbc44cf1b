"""Memory read and written by address in numba-compiled code.

numba counts references to every array handed from one compiled function to another, with an atomic
operation each time: in a loop that calls a small helper per byte or field, the counting costs more than the
work. Helpers that take an address (``address(array)``, an int) and an index instead cost nothing more than
the load or store. The caller holds the arrays, so the addresses stay valid while it runs; nothing checks
bounds (as numba's own indexing does not by default).

numba's cache on disk is keyed by the file of the function it compiled: after a change here, delete the
``__pycache__/*.nbi`` and ``*.nbc`` files of the modules that use these, or they keep their old code.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic


def _address_and_index(builder: Any, args: Any, width: int) -> Any:
    address, index = args[0], args[1]
    at = builder.add(address, builder.mul(index, ir.Constant(index.type, width)) if width > 1 else index)
    return builder.inttoptr(at, ir.IntType(8 * width).as_pointer())


@intrinsic
def peek(typingctx: Any, address: Any, index: Any) -> Any:
    """The byte at ``address + index``."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.load(_address_and_index(builder, args, 1))

    return types.uint8(address, index), codegen


@intrinsic
def poke(typingctx: Any, address: Any, index: Any, value: Any) -> Any:
    """Store ``value`` as the byte at ``address + index``."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        byte = context.cast(builder, args[2], signature.args[2], types.uint8)
        builder.store(byte, _address_and_index(builder, args, 1))
        return context.get_dummy_value()

    return types.none(address, index, value), codegen


@intrinsic
def get(typingctx: Any, address: Any, index: Any) -> Any:
    """The int64 at ``address + 8 * index``."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.load(_address_and_index(builder, args, 8))

    return types.int64(address, index), codegen


@intrinsic
def put(typingctx: Any, address: Any, index: Any, value: Any) -> Any:
    """Store ``value`` as the int64 at ``address + 8 * index``."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        word = context.cast(builder, args[2], signature.args[2], types.int64)
        builder.store(word, _address_and_index(builder, args, 8))
        return context.get_dummy_value()

    return types.none(address, index, value), codegen


@njit(cache=True, inline="always")
def address(array: np.ndarray) -> int:
    return np.int64(array.ctypes.data)


@intrinsic
def word(typingctx: Any, address: Any, offset: Any) -> Any:
    """The 8 bytes at ``address + offset`` as a little-endian uint64 (any alignment)."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        at = builder.add(args[0], args[1])
        return builder.load(builder.inttoptr(at, ir.IntType(64).as_pointer()), align=1)

    return types.uint64(address, offset), codegen
