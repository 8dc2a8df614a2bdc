# Two commands matter: `make demo` (the whole pipeline on demo data) and `make test`.
# Both install the pinned stack into .venv-$(STACK) first if it is not there yet.
# STACK picks the Paddle version (stacks/*.txt): paddle33 (default) or paddle26.
PYTHON ?= python3
STACK ?= paddle33
VENV ?= .venv-$(STACK)
ifeq ($(wildcard stacks/$(STACK).txt),)
$(error unknown STACK=$(STACK): use one of $(basename $(notdir $(wildcard stacks/*.txt))))
endif
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.slimext-installed

.PHONY: install demo test test-all-stacks bench clean checkout-deps

install: $(STAMP)

# paddleslim 2.6.0 pins opencv 4.6.0.66 while paddledet wants <=4.6.0, so it goes in
# with --no-deps after the rest (last, so that no later install re-checks its pins and
# prints pip's resolver ERROR); constraints.txt holds the pins that were measured to work.
$(STAMP): stacks/$(STACK).txt requirements-extra.txt constraints.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt -r stacks/$(STACK).txt
	$(PIP) install -q -c constraints.txt $$(grep -v '^#' requirements-extra.txt | grep -v paddleslim)
	$(PIP) install -q --no-deps paddleslim==2.6.0
	$(PIP) install -q --no-deps -e .
	touch $@

# The optional OpenVINO runtime is part of the test stack, so its tests always run.
OPENVINO_STAMP := $(VENV)/.slimext-openvino

$(OPENVINO_STAMP): $(STAMP) requirements-openvino.txt
	$(PIP) install -q -c constraints.txt -r requirements-openvino.txt
	touch $@

# The ONNX route (export and ONNX Runtime) likewise: its tests always run.
ONNX_STAMP := $(VENV)/.slimext-onnx

$(ONNX_STAMP): $(STAMP) requirements-onnx.txt
	$(PIP) install -q -c constraints.txt -r requirements-onnx.txt
	touch $@

# The demo times every runtime side by side, so it installs the optional ones too.
demo: install $(OPENVINO_STAMP) $(ONNX_STAMP)
	$(PY) -m slimext.demo --workdir demo_output

test: install $(OPENVINO_STAMP) $(ONNX_STAMP)
	$(PY) -m pytest -q tests

# Every supported stack, one after the other (what CI runs).
test-all-stacks:
	$(MAKE) test STACK=paddle33
	$(MAKE) test STACK=paddle26

# What a PaddleDetection checkout's own ppdet needs (its requirements.txt; v2.7+ import
# imgaug), installed with every package already in the venv held at its version: what
# would move a pin or overwrite a module another package provides is skipped and said.
#   make checkout-deps PPDET=../PaddleDetection
checkout-deps: install
	@test -n "$(PPDET)" || { echo "Error: say which checkout: make checkout-deps PPDET=../PaddleDetection" >&2; exit 2; }
	$(PY) -m slimext.compat.checkout_requirements "$(PPDET)" --constraints constraints.txt

bench: install
	$(PY) -m benchmarks.matcher_speed

clean:
	rm -rf demo_output output output_inference .pytest_cache
