# pspnet-trt: every stage is a `pspnet-trt` subcommand; these targets are thin wrappers.
# Two commands on a fresh clone:  `make demo` (installs, then runs the main job)  and  `make test`.
# Variables (VAR=value on the command line): MODEL PRECISION INPUT_SIZE=HxW FRAME=HxW CHECKPOINT=PATH DATA=ROOT
# (or CAMVID_ROOT) ONNX= ENGINE= LIMIT=N IMAGES_DIR=FOLDER RANDOM_WEIGHTS=1 OVERWRITE=1.

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
LIMIT ?=
WORK ?= work/$(MODEL)
# INPUT_SIZE=HxW: the network input (default: the zoo's deploy size)
INPUT_SIZE ?=
SIZE_ARGS = $(if $(INPUT_SIZE),--input-size $(INPUT_SIZE))
# FRAME=HxW: raw-frame artifacts (uint8 BGR camera frames of that size in, labels at that size out)
FRAME ?=
FRAME_ARGS = $(if $(FRAME),--input-format bgr8 --frame-size $(FRAME))
# the weights: CHECKPOINT=PATH, else the one shipped in samples/ (r18_os8_camvid) or the published one;
# RANDOM_WEIGHTS=1 for random weights (plumbing and speed only; the artifact says so)
WEIGHTS_ARGS = $(if $(CHECKPOINT),--checkpoint $(CHECKPOINT)) $(if $(RANDOM_WEIGHTS),--random-weights)
# Artifact names, one scheme (pspnet_trt/artifacts.py, artifact_name; engines/README.md):
#   engines/<model>_<H>x<W>[_frame<FH>x<FW>|_pixels]_<precision>.onnx|.engine
artifact = $(shell $(PY) -m pspnet_trt.engine --model $(MODEL) $(SIZE_ARGS) $(if $(FRAME),--frame-size $(FRAME)) --precision $(1))

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
	$(if $(DATA),,$(error set DATA=ROOT (the dataset root; or CAMVID_ROOT)))
	$(CLI) train --model $(MODEL) --data $(DATA) --work-dir $(WORK) --resume

# export writes the FP32 graph (what quantize reads) and, with PRECISION=fp16 (the default), the FP16 graph too.
# The calibration list's image paths are relative to the dataset root: quantize takes it from DATA.
# calibrate leaves an identical list as it is and refuses to replace a different one without OVERWRITE=1.
CALIBRATION ?= calibration/$(MODEL)_train_n64_s0.txt
export: install
	$(CLI) export --model $(MODEL) $(WEIGHTS_ARGS) $(SIZE_ARGS) --precision fp32 $(FRAME_ARGS) --out $(call artifact,fp32)
	$(if $(filter fp16,$(PRECISION)),$(CLI) export --model $(MODEL) $(WEIGHTS_ARGS) $(SIZE_ARGS) --precision fp16 $(FRAME_ARGS) --out $(call artifact,fp16))

calibrate: install
	$(if $(DATA),,$(error set DATA=ROOT (the dataset root)))
	$(CLI) calibrate --model $(MODEL) --data $(DATA) --split train --num-images 64 --seed 0 --out $(CALIBRATION) $(if $(OVERWRITE),--overwrite)

quantize: install
	$(if $(DATA),,$(error set DATA=ROOT (the dataset root): the calibration list's paths are relative to it))
	$(CLI) quantize --onnx $(call artifact,fp32) --calibration $(CALIBRATION) --data $(DATA) --out $(call artifact,int8)

# make engine MODEL=r50_os8_cityscapes PRECISION=fp16 : download -> export -> (quantize) -> build -> check
# (mIoU gate with DATA=ROOT, else labels agreement with PyTorch on samples/ or IMAGES_DIR=FOLDER; exit 1 below it)
# (TensorRT and a usable GPU are checked first; its hints name these make variables)
engine: install
	PSPNET_TRT_MAKE=1 $(CLI) engine --model $(MODEL) --precision $(PRECISION) $(SIZE_ARGS) $(FRAME_ARGS) $(WEIGHTS_ARGS) $(if $(DATA),--data $(DATA)) $(if $(IMAGES_DIR),--images-dir $(IMAGES_DIR))

# LIMIT=N: the first N images only (a record under 50 images, or the whole split if smaller, says "partial")
validate: install
	$(if $(DATA),,$(error set DATA=ROOT (the dataset root)))
	$(CLI) validate --model $(MODEL) $(if $(CHECKPOINT),--checkpoint $(CHECKPOINT)) --data $(DATA) $(foreach f,$(ONNX),--onnx $(f)) $(foreach f,$(ENGINE),--engine $(f)) $(if $(LIMIT),--limit $(LIMIT)) --report reports/validate_$(MODEL)

bench: install
	$(PY) benchmarks/bench.py --model $(MODEL) $(foreach f,$(ONNX),--onnx $(f)) $(foreach f,$(ENGINE),--engine $(f))

clean:
	rm -rf .cache work reports .pytest_cache .mypy_cache
