"""Whether engines can be built here: TensorRT importable and a usable GPU (checked before any download or export)."""

from __future__ import annotations

from typing import Optional, Tuple


def engine_plan() -> Tuple[Optional[str], str]:
    """(why no engine can be built here, or None; the labels dtype the engines need: int32 before TensorRT 10)."""
    try:
        import tensorrt
    except ImportError:
        return "TensorRT is not installed", "uint8"
    except Exception as e:  # noqa: BLE001  (a broken install: missing libnvinfer, wrong CUDA)
        return f"TensorRT cannot be imported ({type(e).__name__}: {e})", "uint8"
    version = str(getattr(tensorrt, "__version__", "?"))
    try:
        from ..runtime import cuda

        cuda.device_info()
    except Exception as e:  # noqa: BLE001  (no GPU, no driver, no cuda-python: all mean "no engines here")
        return f"TensorRT {version} is installed but there is no usable GPU ({e})", "uint8"
    from .build import labels_dtype

    return None, labels_dtype()
