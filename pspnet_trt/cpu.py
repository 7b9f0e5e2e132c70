"""What this CPU can do for INT8: model name and the instruction-set flags ONNX Runtime's kernels depend on.

ONNX Runtime runs U8S8 (uint8 activations x int8 weights) convolutions with VNNI dot products
(``vpdpbusd``: exact INT32 sums) where the CPU has them, and otherwise with ``vpmaddubsw``, whose
16-bit pair sums can saturate (its quantization docs: quantize with ``reduce_range`` or U8U8 there;
no such issue with VNNI or on ARM). Float kernels differ too (NCHWc block of 16 floats with
AVX-512, 8 with AVX2). So every INT8 figure for the CPU is quoted with :func:`cpu_info`, and a
``--target cpu`` graph records the CPU class it was quantized for.

Flags come from ``/proc/cpuinfo`` (Linux), ``sysctl`` (macOS), else none are known (the class is
then ``unknown``: no saturation-avoiding choice can be made and none is claimed).
"""

from __future__ import annotations

import platform
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Set, Tuple

# the flags INT8/float CPU kernels dispatch on; the rest of /proc/cpuinfo is not recorded
RELEVANT_FLAGS = ("sse4_1", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                  "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "asimd", "asimddp", "i8mm")
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


@dataclass(frozen=True)
class CpuInfo:
    model: str
    machine: str  # x86_64, aarch64, arm64, ...
    flags: Tuple[str, ...]  # the RELEVANT_FLAGS this CPU has, sorted

    @property
    def x86(self) -> bool:
        return self.machine.lower() in ("x86_64", "amd64", "i686", "i386")

    @property
    def vnni(self) -> bool:
        return any(f in self.flags for f in VNNI_FLAGS)

    @property
    def avx512(self) -> bool:
        return "avx512f" in self.flags and "avx512bw" in self.flags

    @property
    def cpu_class(self) -> str:
        """``x86-vnni``, ``x86-avx512`` (no VNNI), ``x86-avx2``, ``x86`` (older), ``arm``, or ``unknown``."""
        if self.x86:
            if not self.flags:
                return "unknown"
            if self.vnni:
                return "x86-vnni"
            return "x86-avx512" if self.avx512 else "x86-avx2" if "avx2" in self.flags else "x86"
        if self.machine.lower() in ("aarch64", "arm64"):
            return "arm"
        return "unknown"

    @property
    def u8s8_saturates(self) -> bool:
        """True where ONNX Runtime's U8S8 kernels use ``vpmaddubsw`` (x86 without VNNI): 16-bit pair sums
        that can saturate. False with VNNI and on ARM; None-like False for an unknown CPU."""
        return self.cpu_class in ("x86-avx512", "x86-avx2", "x86")

    def to_dict(self) -> Dict[str, Any]:
        return {"model": self.model, "machine": self.machine, "class": self.cpu_class, "flags": list(self.flags),
                "vnni": self.vnni, "avx512": self.avx512}


def parse_cpuinfo(text: str, machine: Optional[str] = None) -> CpuInfo:
    """:class:`CpuInfo` from the text of ``/proc/cpuinfo`` (x86 ``flags`` / ARM ``Features`` lines)."""
    model = ""
    flags: Set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return from_flags(flags, model, machine)


def from_flags(flags: Iterable[str], model: str = "", machine: Optional[str] = None) -> CpuInfo:
    """:class:`CpuInfo` for a given set of flags (tests inject CPUs this way)."""
    flags = {f.lower() for f in flags}
    return CpuInfo(model or platform.processor() or "unknown", machine or platform.machine() or "unknown",
                   tuple(sorted(f for f in RELEVANT_FLAGS if f in flags)))


def _macos_flags() -> Iterable[str]:
    try:
        out = subprocess.run(["sysctl", "-n", "machdep.cpu.features", "machdep.cpu.leaf7_features"],
                             capture_output=True, text=True, timeout=5, check=False).stdout
    except OSError:
        return ()
    # sysctl spells them AVX512VNNI, AVX2, FMA, ...: map to the Linux names
    names = {"AVX512VNNI": "avx512_vnni", "AVX512F": "avx512f", "AVX512BW": "avx512bw", "AVX512VL": "avx512vl",
             "AVX2": "avx2", "FMA": "fma", "AVX1.0": "avx", "SSE4.1": "sse4_1", "F16C": "f16c", "AVXVNNI": "avx_vnni"}
    return [names[w] for w in out.split() if w in names]


@lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """This machine's CPU (cached)."""
    path = Path("/proc/cpuinfo")
    if path.is_file():
        try:
            return parse_cpuinfo(path.read_text(errors="replace"))
        except OSError:
            pass
    if platform.system() == "Darwin":
        return from_flags(_macos_flags())
    return from_flags(())


def other_cpu_class(quantization: Dict[str, Any], here: CpuInfo) -> Optional[str]:
    """A warning when a ``--target cpu`` graph (its ``quantization`` metadata) was made for the other kind of
    CPU than ``here``: 7-bit weights for a saturating CPU vs full 8-bit weights for one that is not."""
    made = (quantization.get("cpu") or {}).get("class")
    if not made or made == "unknown" or here.cpu_class == "unknown":
        return None
    if bool(quantization.get("reduce_range")) == here.u8s8_saturates:
        return None
    why = ("ONNX Runtime's U8S8 kernels may saturate here (no VNNI): re-quantize on this machine with "
           "`pspnet-trt quantize --target cpu`" if here.u8s8_saturates else
           "its 7-bit weights (reduce_range) cost accuracy for nothing here: re-quantize on this machine")
    return f"quantized for a {made} CPU but runs on {here.model} ({here.cpu_class}): {why}"
