# The incident engine. `make run` starts the worker on embedded defaults; `make test` runs
# every test (it needs initdb/pg_ctl on PATH and kcat, see README).
GO ?= go
PKGS := ./...

DATA ?= ../shared/data

FUZZTIME ?= 1m

.PHONY: run test fuzz bench eval lint generate build producer clean

run: ## run the worker with --dev (in-process Kafka on :9092, private PostgreSQL under .data/ unless configured)
	@echo "building the worker (the first build downloads and compiles the modules: several minutes; go build -v lists each package)" >&2
	@$(GO) build -v -o bin/worker ./cmd/worker
	bin/worker --dev $(ARGS)

build:
	$(GO) build -o bin/ ./cmd/...

test: ## every test: unit, handler, PostgreSQL and Kafka integration, end to end; each fuzz target briefly
	$(GO) test -count=1 -timeout 20m $(PKGS)
	@# A few seconds of each fuzz target, counted in inputs rather than time: Go 1.26's fuzzer
	@# can fail a target that found nothing when a -fuzztime duration ends mid-input
	@# (go.dev/issue/75804, fixed in Go 1.27); a count has no deadline.
	@$(MAKE) --no-print-directory fuzz FUZZ_DECODE=30000x FUZZ_MODEL=50000x FUZZ_STATE=10000x FUZZ_BODY=2000x

fuzz: ## each fuzz target (the decoder, a stored model, a saved detector state, the API's request bodies) for FUZZTIME (default 1m)
	$(GO) test ./handlers -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(or $(FUZZ_DECODE),$(FUZZTIME))
	$(GO) test ./domain/detect -run '^$$' -fuzz '^FuzzRestoreModel$$' -fuzztime $(or $(FUZZ_MODEL),$(FUZZTIME))
	$(GO) test ./domain/detect -run '^$$' -fuzz '^FuzzRestoreState$$' -fuzztime $(or $(FUZZ_STATE),$(FUZZTIME))
	$(GO) test ./infra/api -run '^$$' -fuzz '^FuzzDecodeBody$$' -fuzztime $(or $(FUZZ_BODY),$(FUZZTIME))

bench: ## one table: scoring, memory and pipeline benchmarks beside scikit-learn, measured in the same run (apt-get install -y python3-sklearn for its column)
	GO=$(GO) /usr/bin/python3 scripts/bench_table.py

eval: ## detection on every benchmark set under DATA (default ../shared/data) beside scikit-learn; needs apt-get install -y python3-sklearn python3-pandas
	$(GO) run ./cmd/incidentctl eval $(EVAL_FLAGS) $(DATA)

lint: ## gofmt and go vet
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

generate: ## regenerate wire_gen.go
	$(GO) tool wire ./wire

clean:
	rm -rf bin .data
