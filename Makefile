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
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
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
	$(CLI) demo $(if $(DEMO_FAST),--fast) $(if $(DATA),--data $(DATA))

train: install
	$(if $(DATA),,$(error set DATA=<dataset root> (or CAMVID_ROOT)))
	$(CLI) train --model $(MODEL) --data $(DATA) --work-dir $(WORK) --resume

EXPORT_PRECISION = $(if $(filter fp16,$(PRECISION)),fp16,fp32)
export: install
	$(CLI) export --model $(MODEL) $(if $(CHECKPOINT),--checkpoint $(CHECKPOINT)) --precision $(EXPORT_PRECISION) $(FRAME_ARGS) --out engines/$(MODEL)$(FRAME_TAG)_$(EXPORT_PRECISION).onnx

calibrate: install
	$(if $(DATA),,$(error set DATA=<dataset root>))
	$(CLI) calibrate --model $(MODEL) --data $(DATA) --split train --num-images 64 --seed 0

quantize: install
	$(CLI) quantize --onnx engines/$(MODEL)_fp32.onnx --calibration calibration/$(MODEL)_train_n64_s0.txt $(if $(DATA),--data $(DATA)) --out engines/$(MODEL)_int8.onnx

# make engine MODEL=r50_os8_cityscapes PRECISION=fp16 : download -> export -> (quantize) -> build -> quick validation
engine: install
	$(CLI) engine --model $(MODEL) --precision $(PRECISION) $(FRAME_ARGS) $(if $(CHECKPOINT),--checkpoint $(CHECKPOINT)) $(if $(DATA),--data $(DATA))

validate: install
	$(if $(DATA),,$(error set DATA=<dataset root>))
	$(CLI) validate --model $(MODEL) $(if $(CHECKPOINT),--checkpoint $(CHECKPOINT)) --data $(DATA) $(foreach f,$(ONNX),--onnx $(f)) $(foreach f,$(ENGINE),--engine $(f)) --report reports/validate_$(MODEL)

bench: install
	$(PY) benchmarks/bench.py --model $(MODEL) $(foreach f,$(ONNX),--onnx $(f)) $(foreach f,$(ENGINE),--engine $(f))

clean:
	rm -rf .cache work reports .pytest_cache .mypy_cache
