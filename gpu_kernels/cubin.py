"""What ptxas gave each kernel of a cubin: registers a thread and stack (local memory) bytes.

Occupancy follows from registers (65536 an SM: a 256-thread CTA of 64 registers leaves room for
4 CTAs, of 94 for 2), and a stack frame means a register file indexed at run time or spilled.
Both are read from the cubin's ELF on any machine, so CI checks them for every arch without a
GPU: the per-kernel ``.nv.info`` attributes EIATTR_REGCOUNT and EIATTR_FRAME_SIZE (the formats
``cuobjdump --dump-resource-usage`` prints)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

EIATTR_FRAME_SIZE = 0x11
EIATTR_REGCOUNT = 0x2F
EIFMT_SVAL = 0x04  # {size u16, symbol u32, value u32}; other formats are skipped by size
_FIXED_SIZE = {0x01: 0, 0x02: 1, 0x03: 2}  # EIFMT_NVAL, EIFMT_BVAL, EIFMT_HVAL: payload bytes


@dataclass(frozen=True)
class KernelResources:
    registers: int
    stack_bytes: int


def kernel_resources(cubin: bytes) -> dict[str, KernelResources]:
    """Each kernel of ``cubin`` (an ELF64 from NVRTC) -> its registers and stack frame."""
    shoff = struct.unpack_from("<Q", cubin, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", cubin, 0x3A)
    # (name offset, type, flags, addr, offset, size, link, info, align, entsize)
    sections = [struct.unpack_from("<IIQQQQIIQQ", cubin, shoff + i * shentsize)
                for i in range(shnum)]

    def cstr(offset: int) -> str:
        return cubin[offset:cubin.index(b"\0", offset)].decode()

    names = [cstr(sections[shstrndx][4] + s[0]) for s in sections]
    symtab, strtab = sections[names.index(".symtab")], sections[names.index(".strtab")]
    symbols = [cstr(strtab[4] + struct.unpack_from("<I", cubin, symtab[4] + 24 * i)[0])
               for i in range(symtab[5] // 24)]
    values: dict[int, dict[str, int]] = {}
    info = sections[names.index(".nv.info")]
    data, i = cubin[info[4]:info[4] + info[5]], 0
    while i < len(data):
        fmt, attr = data[i], data[i + 1]
        if fmt == EIFMT_SVAL:
            size = struct.unpack_from("<H", data, i + 2)[0]
            if attr in (EIATTR_REGCOUNT, EIATTR_FRAME_SIZE):
                symbol, value = struct.unpack_from("<II", data, i + 4)
                key = "registers" if attr == EIATTR_REGCOUNT else "stack_bytes"
                values.setdefault(symbol, {})[key] = value
            i += 4 + size
        else:
            i += 2 + _FIXED_SIZE.get(fmt, 0)
    kernels = {n[len(".text."):] for n in names if n.startswith(".text.")}
    return {symbols[sym]: KernelResources(v.get("registers", 0), v.get("stack_bytes", 0))
            for sym, v in values.items() if symbols[sym] in kernels}
