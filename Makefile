# pspnet-trt: every stage is a `pspnet-trt` subcommand; these targets are thin wrappers.
# Two commands on a fresh clone:  `make demo` (installs, then runs the main job)  and  `make test`.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CLI := $(VENV)/bin/pspnet-trt
STAMP := $(VENV)/.installed

MODEL ?= r18_os8_camvid
PRECISION ?= fp16
CAMVID_ROOT ?=
DATA ?= $(CAMVID_ROOT)
CHECKPOINT ?=
ONNX ?=
ENGINE ?=
WORK ?= work/$(MODEL)
# FRAME=HxW: raw-frame artifacts (uint8 BGR camera frames of that size in, labels at that size out)
FRAME ?=
FRAME_ARGS = $(if $(FRAME),--input-format bgr8 --frame-size $(FRAME))
FRAME_TAG = $(if $(FRAME),_frame$(FRAME))

.PHONY: install test typecheck lint demo zoo train export calibrate quantize engine build validate bench clean

install: $(STAMP)

# torch is pinned to the CPU wheel that lies on this machine's disk; a looser pin pulls a CUDA build.
# nvidia-pytriton brings the Triton server for `pspnet-trt serve` and its tests (an x86_64 glibc >= 2.35 wheel);
# --no-deps because its metadata pins numpy<2 and only its server binary is used.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps nvidia-pytriton==0.7.0 || echo "nvidia-pytriton is not available here: the Triton server tests will skip"
	touch $@

test: install
	$(PY) -m pytest -q

typecheck: install
	$(PY) tools/trt_stubs.py --out .cache/trt-stubs
	MYPYPATH=.cache/trt-stubs $(PY) -m mypy pspnet_trt/trt pspnet_trt/runtime

lint: install
	$(VENV)/bin/ruff check pspnet_trt tests benchmarks tools

zoo: install
	$(CLI) zoo

demo: install
	$(CLI) demo $(if $(DEMO_FAST),--fast) $(if $(DATA),--data $(DATA)) $(if $(TRAIN_FROM_SCRATCH),--from-scratch)

train: install
	$(if $(DATA),,$(error set DATA=<dataset root> (or CAMVID_ROOT)))
	$(CLI) train --model $(MODEL) --data $(DATA) --work-dir $(WORK) --resume

# export writes the FP32 graph (what quantize reads) and, with PRECISION=fp16 (the default), the FP16 graph too.
# The calibration list's image paths are relative to the dataset root: quantize takes it from DATA.
FP32_ONNX = engines/$(MODEL)$(FRAME_TAG)_fp32.onnx
CALIBRATION ?= calibration/$(MODEL)_train_n64_s0.txt
export: install
	$(CLI) export --model $(MODEL) $(if $(CHECKPOINT),--checkpoint $(CHECKPOINT)) --precision fp32 $(FRAME_ARGS) --out $(FP32_ONNX)
	$(if $(filter fp16,$(PRECISION)),$(CLI) export --model $(MODEL) $(if $(CHECKPOINT),--checkpoint $(CHECKPOINT)) --precision fp16 $(FRAME_ARGS) --out engines/$(MODEL)$(FRAME_TAG)_fp16.onnx)

calibrate: install
	$(if $(DATA),,$(error set DATA=<dataset root>))
	$(CLI) calibrate --model $(MODEL) --data $(DATA) --split train --num-images 64 --seed 0 --out $(CALIBRATION)

quantize: install
	$(if $(DATA),,$(error set DATA=<dataset root>: the calibration list's paths are relative to it))
	$(CLI) quantize --onnx $(FP32_ONNX) --calibration $(CALIBRATION) --data $(DATA) --out engines/$(MODEL)$(FRAME_TAG)_int8.onnx

# make engine MODEL=r50_os8_cityscapes PRECISION=fp16 : download -> export -> (quantize) -> build -> check
# (mIoU gate with DATA=ROOT, else labels agreement with PyTorch on samples/ or IMAGES_DIR=FOLDER; exit 1 below it)
engine: install
	$(CLI) engine --model $(MODEL) --precision $(PRECISION) $(FRAME_ARGS) $(if $(CHECKPOINT),--checkpoint $(CHECKPOINT)) $(if $(DATA),--data $(DATA)) $(if $(IMAGES_DIR),--images-dir $(IMAGES_DIR))

validate: install
	$(if $(DATA),,$(error set DATA=<dataset root>))
	$(CLI) validate --model $(MODEL) $(if $(CHECKPOINT),--checkpoint $(CHECKPOINT)) --data $(DATA) $(foreach f,$(ONNX),--onnx $(f)) $(foreach f,$(ENGINE),--engine $(f)) --report reports/validate_$(MODEL)

bench: install
	$(PY) benchmarks/bench.py --model $(MODEL) $(foreach f,$(ONNX),--onnx $(f)) $(foreach f,$(ENGINE),--engine $(f))

clean:
	rm -rf .cache work reports .pytest_cache .mypy_cache
