# llm-tiny: every command a user or CI runs. `make help` lists them.
PYTHON ?= python
PKGS := llm_tiny tok model

.DEFAULT_GOAL := help
.PHONY: help format lint test check-readme

help:  ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-12s %s\n", $$1, $$2}'

format:  ## rewrite the code in place with black and ruff's fixes
	$(PYTHON) -m ruff check --fix .
	$(PYTHON) -m black .

lint:  ## ruff, black --check and mypy: the same checks CI runs
	$(PYTHON) -m ruff check .
	$(PYTHON) -m black --check .
	$(PYTHON) -m mypy $(PKGS)

test:  ## the whole test suite; fails under 80% coverage overall or 90% in tok/ or model/
	$(PYTHON) -m pytest --cov --cov-report=term-missing:skip-covered --cov-fail-under=80
	@echo "coverage of the critical parts (tokenizer, attention/model), each must be >= 90%:"
	$(PYTHON) -m coverage report --include='tok/*' --fail-under=90
	$(PYTHON) -m coverage report --include='model/*' --fail-under=90

check-readme:  ## run the README's console blocks and compare (ALL=1: also train/finetune/sweep, ~20 min)
	$(PYTHON) tools/check_readme.py $(if $(ALL),--all)

# ---- tokenizer ---------------------------------------------------------------------------------
VOCAB ?= 1000
TOK_CORPUS ?= data/tiny.txt
TOK_PLAYS ?=
.PHONY: bpe-train bench-tok

bpe-train:  ## train tok/bpe.json on data/tiny.txt (VOCAB=1000)
	$(PYTHON) -m tok.bpe train data/tiny.txt --vocab $(VOCAB) --out tok/bpe.json

bench-tok:  ## tokenizer vs HF tokenizers and tiktoken; TOK_CORPUS=file TOK_PLAYS=file-or-folder
	$(PYTHON) -m llm_tiny.bench.tokenizer --corpus $(TOK_CORPUS) $(if $(TOK_PLAYS),--plays $(TOK_PLAYS))

# ---- train, evaluate, sample ------------------------------------------------------------------
CFG ?= configs/tiny.yaml
TRAIN_ARGS ?=
RUN ?= runs/$(basename $(notdir $(CFG)))
CKPT ?= $(RUN)/ckpt_best.pt
PROMPT ?=
STEPS ?= 200
SEED ?= 1
OUT ?= $(RUN)/hf
.PHONY: prepare train resume eval sample export

prepare:  ## tokenizer + token caches of CFG's corpus, with a summary; TRAIN_ARGS="data.path=DIR ..."
	$(PYTHON) -m llm_tiny.prepare $(CFG) $(TRAIN_ARGS)

train:  ## train CFG (default configs/tiny.yaml) -> runs/<cfg name>/; TRAIN_ARGS="train.lr=1e-3 ..."
	$(PYTHON) -m llm_tiny.train $(CFG) $(TRAIN_ARGS)

resume:  ## continue CFG's stopped run from its ckpt_last.pt (same steps, as if never stopped)
	$(PYTHON) -m llm_tiny.train $(CFG) train.resume=true $(TRAIN_ARGS)

# eval, sample and export of a run never trained: one line that says how to train it
need-ckpt = @test -e $(CKPT) || { echo "error: $(CKPT) not found: train it first: make train CFG=$(CFG)" >&2; exit 2; }

eval:  ## val loss, perplexity, bits per byte of CKPT (default runs/<cfg name>/ckpt_best.pt)
	$(need-ckpt)
	$(PYTHON) -m llm_tiny.eval --ckpt $(CKPT)

sample:  ## text from CKPT: make sample PROMPT="Hello" [STEPS=200 SEED=1]
	$(need-ckpt)
	$(PYTHON) -m llm_tiny.sample --ckpt $(CKPT) --prompt "$(PROMPT)" --steps $(STEPS) --seed $(SEED)

export:  ## a Hugging Face transformers folder from CKPT -> OUT (default runs/<cfg name>/hf)
	$(need-ckpt)
	$(PYTHON) -m llm_tiny.export --ckpt $(CKPT) --out $(OUT)

# ---- fine-tuning: pretrain once (skipped while its checkpoint exists), then train.init_from -------
PRETRAINED := runs/pretrain_tinyshakespeare/ckpt_last.pt
.PHONY: finetune

$(PRETRAINED):
	$(PYTHON) -m llm_tiny.train configs/pretrain_tinyshakespeare.yaml

finetune: $(PRETRAINED)  ## pretrain on tinyshakespeare (~4 min), fine-tune on data/tiny.txt (~1.5 min)
	$(PYTHON) -m llm_tiny.train configs/finetune_tiny.yaml train.init_from=$(PRETRAINED) $(TRAIN_ARGS)

# ---- experiment tools: sweep, bench, plot ------------------------------------------------------
SWEEP_ARGS ?= configs/tiny.yaml --grid model.n_embd=64,128 train.lr=1e-3,3e-3 --steps 400
BENCH_ARGS ?=
RUNS ?=
.PHONY: sweep bench plot

sweep:  ## 4-point grid on configs/tiny.yaml (< 10 min on 2 CPU cores) -> runs/sweep_tiny/
	$(PYTHON) -m llm_tiny.sweep $(SWEEP_ARGS)

bench:  ## throughput, memory (MFU on CUDA) of CFG and the tokenizer; BENCH_ARGS="--out BENCH.md"
	$(PYTHON) -m llm_tiny.bench $(CFG) --tokenizer $(BENCH_ARGS)

plot:  ## curves of the latest run (or RUNS="runs/a runs/b") -> runs/plot.png
	$(PYTHON) -m llm_tiny.plot $(RUNS)
