# The two commands: `make run` and `make test`. Both create .venv on first use.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/her2viewer view --demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

test: lint
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info

# The desktop bundle (dist/her2viewer/), built in its own venv with CPU-only torch; not part of
# `make test` or CI. Where PyPI's torch is a CUDA build, point TORCH_INDEX at PyTorch's CPU wheel
# index (packaging/README.md).
PACKAGE_VENV ?= build/package-venv
TORCH_CPU ?= torch==2.13.0 torchvision==0.28.0
TORCH_INDEX ?=

.PHONY: package docs

package:
	test -x $(PACKAGE_VENV)/bin/python || $(PYTHON) -m venv $(PACKAGE_VENV)
	$(PACKAGE_VENV)/bin/pip install --quiet $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) $(TORCH_CPU)
	$(PACKAGE_VENV)/bin/python -c "import torch, sys; sys.exit(torch.version.cuda and \
		f'torch {torch.__version__} is a CUDA build: set TORCH_INDEX to a CPU wheel index.')"
	$(PACKAGE_VENV)/bin/pip install --quiet -e ".[radiomics]" pyinstaller
	$(PACKAGE_VENV)/bin/pyinstaller --noconfirm --log-level WARN --distpath dist \
		--workpath build/pyinstaller packaging/her2viewer.spec
	packaging/smoke_bundle.sh dist/her2viewer

# The user guide: fresh screenshots from the real app, then a strict build into build/site.
docs: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python docs/screenshots.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir build/site
