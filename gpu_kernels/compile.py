"""NVRTC compilation of the project's CUDA C++ as a pure, cached function.

``compile_kernel(source, arch, options, nvrtc_major)`` turns CUDA C++ into a cubin for one GPU
arch. It runs on the CPU (NVRTC needs no GPU), so a machine without a GPU cross-compiles for
Xavier (sm_72), Orin (sm_87) and the H100 (sm_90).

Two front ends, one NVRTC C API. ``cuda.core.Program`` compiles whenever the target's NVRTC
major is the one cuda-bindings loaded (the usual case: sm_87 / sm_90). cuda-bindings loads
exactly one NVRTC per process, though, and Tandem picks it per *target*: CUDA 13's NVRTC
rejects sm_72, so Xavier (JetPack 5, CUDA 11.4) needs a CUDA 11/12 NVRTC in the same process
that builds sm_87 / sm_90 with NVRTC 13. Those targets go through a thin ctypes binding of
``libnvrtc.so.<major>`` (the C API is the same in 11, 12 and 13).

The kernels include no CUDA headers (see common.cuh): cuda.core gets this folder as its include
path, the ctypes front end the project's ``*.cuh`` files as in-memory headers.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import hashlib
import io
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from partitioner.errors import TandemError
from partitioner.files import write_atomic

KERNEL_DIR = Path(__file__).resolve().parent
SUPPORTED_MAJORS = (13, 12, 11)
# Which extra of tandem-rt brings an NVRTC major (`make demo` installs 'cuda' only).
_EXTRA_HINT = {11: "; the 'xavier' extra: pip install 'tandem-rt[xavier]'",
               12: "; the 'cuda' extra: pip install 'tandem-rt[cuda]'"}
# The oldest arch each NVRTC major accepts as a real (cubin) target.
_MIN_ARCH = {11: 35, 12: 50, 13: 75}


class CompileError(TandemError):
    """NVRTC rejected a kernel; the message carries the whole NVRTC log."""

    def __init__(self, message: str, log: str = "") -> None:
        super().__init__(message if not log else f"{message}\n{log}")
        self.log = log


class NvrtcNotFoundError(TandemError):
    """No NVRTC library of the requested CUDA major could be loaded."""


@dataclass(frozen=True)
class CompiledModule:
    """The result of one compilation: a cubin plus what produced it."""

    cubin: bytes
    log: str
    arch: str
    options: tuple[str, ...]
    nvrtc_version: tuple[int, int]
    name: str = ""
    from_cache: bool = field(default=False, compare=False)
    frontend: str = field(default="", compare=False)  # "cuda.core" | "ctypes" | "" (cache)


# ----- finding and loading libnvrtc ------------------------------------------------------------


def _candidate_paths(major: int) -> list[str]:
    """Places a ``libnvrtc.so.<major>`` may live, most specific first."""
    env = os.environ.get(f"TANDEM_NVRTC{major}_LIB") or os.environ.get("TANDEM_NVRTC_LIB")
    found: list[str] = [env] if env else []
    for base in sys.path:
        nv = os.path.join(base, "nvidia")
        if os.path.isdir(nv):
            # cu11/cu12 wheels: nvidia/cuda_nvrtc/lib; cu13 wheels: nvidia/cu13/lib
            found += sorted(glob.glob(os.path.join(nv, "*", "lib", f"libnvrtc.so.{major}*")))
    homes = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    homes += sorted(glob.glob(f"/usr/local/cuda-{major}*"))
    for home in filter(None, homes):
        for sub in ("lib64", "lib", "targets/x86_64-linux/lib", "targets/aarch64-linux/lib"):
            found += sorted(glob.glob(os.path.join(home, sub, f"libnvrtc.so.{major}*")))
    found.append(f"libnvrtc.so.{major}")  # whatever the system loader finds
    # builtins libraries match the pattern too; they are not NVRTC itself
    return [p for p in found if "builtins" not in os.path.basename(p) and ".alt." not in p]


class Nvrtc:
    """One loaded NVRTC library (thin ctypes binding of the C API)."""

    def __init__(self, lib: ctypes.CDLL, path: str) -> None:
        self.lib = lib
        self.path = path
        maj, mi = ctypes.c_int(), ctypes.c_int()
        self._check(lib.nvrtcVersion(ctypes.byref(maj), ctypes.byref(mi)), "nvrtcVersion")
        self.version = (maj.value, mi.value)
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p

    def _check(self, code: int, what: str) -> None:
        if code != 0:
            msg = self.lib.nvrtcGetErrorString(code).decode()
            raise CompileError(f"{what} failed: {msg} (NVRTC at {self.path})")

    def compile(
        self, source: str, name: str, headers: dict[str, str], options: tuple[str, ...]
    ) -> tuple[bytes, str]:
        lib = self.lib
        prog = ctypes.c_void_p()
        hdr_src = (ctypes.c_char_p * max(1, len(headers)))(*[v.encode() for v in headers.values()])
        hdr_names = (ctypes.c_char_p * max(1, len(headers)))(*[k.encode() for k in headers])
        self._check(
            lib.nvrtcCreateProgram(
                ctypes.byref(prog), source.encode(), name.encode(), len(headers), hdr_src, hdr_names
            ),
            "nvrtcCreateProgram",
        )
        try:
            opts = (ctypes.c_char_p * max(1, len(options)))(*[o.encode() for o in options])
            code = lib.nvrtcCompileProgram(prog, len(options), opts)
            size = ctypes.c_size_t()
            lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
            buf = ctypes.create_string_buffer(size.value)
            lib.nvrtcGetProgramLog(prog, buf)
            log = buf.value.decode(errors="replace")
            if code != 0:
                err = lib.nvrtcGetErrorString(code).decode()
                raise CompileError(
                    f"NVRTC {self.version[0]}.{self.version[1]} failed to compile '{name}' "
                    f"({' '.join(options)}): {err}",
                    log,
                )
            self._check(lib.nvrtcGetCUBINSize(prog, ctypes.byref(size)), "nvrtcGetCUBINSize")
            cubin = ctypes.create_string_buffer(size.value)
            self._check(lib.nvrtcGetCUBIN(prog, cubin), "nvrtcGetCUBIN")
            return cubin.raw, log
        finally:
            lib.nvrtcDestroyProgram(ctypes.byref(prog))


@functools.cache
def load_nvrtc(major: int) -> Nvrtc:
    """Load the NVRTC of one CUDA major (11, 12 or 13)."""
    if major not in SUPPORTED_MAJORS:
        raise NvrtcNotFoundError(
            f"CUDA major {major} is not supported; use one of {SUPPORTED_MAJORS}"
        )
    tried = []
    for path in _candidate_paths(major):
        try:
            lib = ctypes.CDLL(path)
        except OSError as err:
            tried.append(f"{path} ({err})")
            continue
        return Nvrtc(lib, path)
    raise NvrtcNotFoundError(
        f"no NVRTC for CUDA {major} found; install 'nvidia-cuda-nvrtc-cu{major}' "
        f"(pip{_EXTRA_HINT.get(major, '')}) or set TANDEM_NVRTC{major}_LIB. "
        f"Tried: {'; '.join(tried[-3:])}"
    )


def available_majors() -> list[int]:
    """CUDA majors whose NVRTC loads here, newest first."""
    out = []
    for major in SUPPORTED_MAJORS:
        try:
            load_nvrtc(major)
            out.append(major)
        except NvrtcNotFoundError:
            pass
    return out


def arch_number(arch: str) -> int:
    """``"sm_87"`` / ``"87"`` / ``"compute_87"`` -> 87."""
    digits = arch.rsplit("_", 1)[-1]
    if not digits.isdigit():
        raise CompileError(f"bad GPU arch '{arch}': expected e.g. 'sm_87'")
    return int(digits)


def choose_major(arch: str, nvrtc_major: int | None = None) -> int:
    """The NVRTC major to use for ``arch``: the one asked for, else the newest that accepts it."""
    num = arch_number(arch)
    if nvrtc_major is not None:
        if nvrtc_major not in _MIN_ARCH:
            raise NvrtcNotFoundError(
                f"CUDA major {nvrtc_major} is not supported; use one of {SUPPORTED_MAJORS}"
            )
        if num < _MIN_ARCH[nvrtc_major]:
            raise CompileError(
                f"NVRTC {nvrtc_major} cannot compile for sm_{num}; the target needs CUDA "
                f"{max(m for m, lo in _MIN_ARCH.items() if lo <= num)} or older"
            )
        return nvrtc_major
    for major in available_majors():
        if num >= _MIN_ARCH[major]:
            return major
    raise NvrtcNotFoundError(
        f"no installed NVRTC can compile for sm_{num} (CUDA 13 dropped sm_72; install "
        "'nvidia-cuda-nvrtc-cu12')"
    )


def nvrtc_version(arch: str, nvrtc_major: int | None = None) -> tuple[int, int]:
    """The (major, minor) of the NVRTC that :func:`compile_kernel` uses for ``arch``: the one
    cuda-bindings loaded when its major is the one wanted, else ``libnvrtc.so.<major>``.

    Raises :class:`NvrtcNotFoundError` (with the install command) when there is none: a build
    asks this once, before it compiles anything."""
    major = choose_major(arch, nvrtc_major)
    core = cuda_core_nvrtc()
    return core if core is not None and core[0] == major else load_nvrtc(major).version


# ----- the cuda.core front end --------------------------------------------------------------


@functools.cache
def cuda_core_nvrtc() -> tuple[int, int] | None:
    """The NVRTC version cuda-bindings (hence ``cuda.core.Program``) loaded, or None."""
    try:
        from cuda.bindings import nvrtc

        err, major, minor = nvrtc.nvrtcVersion()
        return (int(major), int(minor)) if int(err) == 0 else None
    except Exception:  # not installed, or no NVRTC it can load: the ctypes front end remains
        return None


def _program_options(arch: str, options: tuple[str, ...], name: str) -> Any:
    """NVRTC command-line options (what the ctypes front end passes) as ProgramOptions."""
    from cuda.core import ProgramOptions

    macros: list[str | tuple[str, str]] = []
    ptxas: list[str] = []
    for opt in options:
        if opt.startswith("-D"):
            key, eq, value = opt[2:].partition("=")
            macros.append((key, value) if eq else key)
        elif opt.startswith("--ptxas-options="):
            ptxas.append(opt.split("=", 1)[1])
        else:
            raise CompileError(f"compile option '{opt}' has no cuda.core ProgramOptions form; "
                               "use -DNAME[=VALUE] or --ptxas-options=...")
    return ProgramOptions(name=name, arch=arch, std="c++17", include_path=[str(KERNEL_DIR)],
                          define_macro=macros or None, ptxas_options=ptxas or None)


def _compile_cuda_core(text: str, name: str, arch: str, options: tuple[str, ...],
                       version: tuple[int, int]) -> tuple[bytes, str]:
    from cuda.core import Program

    log = io.StringIO()
    try:
        code = Program(text, "c++", options=_program_options(arch, options, name)).compile(
            "cubin", logs=log)
    except CompileError:
        raise
    except Exception as err:  # cuda.core's NVRTCError: its text holds the compilation log
        raise CompileError(
            f"NVRTC {version[0]}.{version[1]} (cuda.core) failed to compile '{name}' "
            f"({' '.join(options)}): {type(err).__name__}",
            f"{err}\n{log.getvalue()}".strip(),
        ) from None
    return bytes(code.code), log.getvalue()


# ----- sources and the cache ---------------------------------------------------------------


def project_headers() -> dict[str, str]:
    """Every ``*.cuh`` beside this file, by include name."""
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(KERNEL_DIR.glob("*.cuh"))}


def read_source(source_name_or_text: str) -> tuple[str, str]:
    """(name, text): a ``*.cu`` name from this package, or CUDA C++ text given directly."""
    if source_name_or_text.endswith(".cu") and "\n" not in source_name_or_text:
        path = KERNEL_DIR / source_name_or_text
        if not path.is_file():
            raise CompileError(f"kernel source '{source_name_or_text}' not found in {KERNEL_DIR}")
        return path.name, path.read_text(encoding="utf-8")
    return "inline.cu", source_name_or_text


def cache_dir() -> Path:
    return Path(os.environ.get("TANDEM_CACHE_DIR", Path.home() / ".cache" / "tandem")) / "cubin"


def _cache_key(text: str, headers: dict[str, str], arch: str, options: tuple[str, ...],
               version: tuple[int, int]) -> str:
    h = hashlib.sha256()
    for part in (text, *headers.keys(), *headers.values(), arch, *options, repr(version)):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


def compile_kernel(
    source_name_or_text: str,
    arch: str,
    options: tuple[str, ...] = (),
    nvrtc_major: int | None = None,
    use_cache: bool = True,
) -> CompiledModule:
    """Compile CUDA C++ to a cubin for ``arch`` (``"sm_87"``); cached on disk.

    The cache key is (source and headers hash, arch, options, NVRTC version), so equal inputs
    always give the same cubin without calling NVRTC again.
    """
    num = arch_number(arch)
    version = nvrtc_version(arch, nvrtc_major)
    use_core = version == cuda_core_nvrtc()
    name, text = read_source(source_name_or_text)
    headers = project_headers()
    full_opts = (f"--gpu-architecture=sm_{num}", "-std=c++17", *options)
    key = _cache_key(text, headers, f"sm_{num}", full_opts, version)
    path = cache_dir() / f"{Path(name).stem}-sm_{num}-{key}.cubin"
    if use_cache and path.is_file():
        return CompiledModule(path.read_bytes(), "", f"sm_{num}", tuple(options), version,
                              name, from_cache=True)
    if use_core:
        cubin, log = _compile_cuda_core(text, name, f"sm_{num}", tuple(options), version)
    else:
        cubin, log = load_nvrtc(version[0]).compile(text, name, headers, full_opts)
    if use_cache:
        try:  # atomic: concurrent builds never see half a file
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, cubin)
        except (OSError, TandemError):
            pass  # a read-only cache only costs time
    return CompiledModule(cubin, log, f"sm_{num}", tuple(options), version, name,
                          frontend="cuda.core" if use_core else "ctypes")
