"""``python -m pspnet_trt`` (and ``torchrun -m pspnet_trt train ...``)."""

from .cli import main

raise SystemExit(main())
