# sluice build and test entry points. CI runs `make test` (via .ci/run).
#
# How the tests are split
# -----------------------
# Every test gets its Kafka from internal/testkit/testbroker: testbroker.Brokers(t) returns
# $KAFKA_BROKERS when set, otherwise a fresh in-process kfake cluster. So:
#
#   make test        the whole suite, two passes (scripts/test-all):
#                    1. kfake pass:  go test -race -count=1 ./...        (no KAFKA_BROKERS)
#                       every test, race detector on, each on its own kfake cluster.
#                    2. broker pass: KAFKA_BROKERS=127.0.0.1:9092 go test -count=1 -p 1
#                       -run '^Test(Integration|Crash)' ./...
#                       against a real Apache Kafka 4.1 broker started by scripts/kafka
#                       and stopped afterwards even if tests fail. No -race (real-broker
#                       tests are timing-bound and the race detector slows them several
#                       times on 2 cores); -p 1 so packages don't compete for the one
#                       broker and the CPUs. If KAFKA_BROKERS is already set, that broker
#                       is used and none is started.
#                    3. secure pass (also `make test-secure`): go test -count=1 -p 1
#                       -run '^TestIntegrationSecure' ./... against the secured broker
#                       that scripts/kafka-secure starts (SASL_SSL with client
#                       certificates, SCRAM users, StandardAuthorizer and ACLs; see
#                       docs/security.md), stopped afterwards. About 30 s to start the
#                       broker and under a minute of tests, so CI runs it as part of
#                       `make test`. Those tests skip in the other passes. If
#                       SLUICE_SECURE_BROKERS is set, that broker is used.
#                    All passes always run; the exit code is the first failing pass's.
#                    Between them, pass bench: the benchmarks module (benchmarks/, its own
#                    go.mod, so not in ./...) is vetted and its smoke tests run on kfake
#                    (cd benchmarks && go test -short -run Smoke ./...), ~30 s.
#   make test-short  go test -short -race ./...: no broker at all, quick.
#   make test-cluster  the cluster fault tests (scripts/test-all cluster): a replicated
#                    3-node Kafka cluster (scripts/kafka with SLUICE_KAFKA_NODES=3, on
#                    ports 19092-19094 and 19100-19102, dir /tmp/sluice-kafka-cluster),
#                    then KAFKA_BROKERS=<its nodes> go test -p 1
#                    -run '^Test(CrashCluster|IntegrationReplicationFactor)'
#                    ./examples/wordcount ./processor: kill -9 of an input leader, of
#                    the transaction coordinator, of the group coordinator, a rolling
#                    restart; the four tests took 16.6 min on the loaded 2-core machine.
#                    Also the last pass of `make test`, when the passes before it
#                    took under CLUSTER_IF_UNDER minutes (22), so that CI's whole run
#                    stays under 45 min; skipped (and said) otherwise.
#
# Naming rule for test authors: a test that must also run on the real broker is named
# TestIntegration* or TestCrash* (and still passes on kfake). Everything else runs on
# kfake only. All tests share one broker: name topics/groups/ids with testbroker.Unique.
# Tests that restart the broker (scripts/kafka stop; scripts/kafka start --keep) must be
# TestCrash*/TestIntegration* and skip unless testbroker.Real().
#
# Knobs: PKGS (default ./...), TEST_TIMEOUT (40m per pass), BROKER_TESTS (the -run
# regexp of the broker pass), SECURE_TESTS (the secure pass's), GOTESTFLAGS (e.g. -v), SLUICE_KAFKA_PORT / SLUICE_KAFKA_DIR /
# SLUICE_KAFKA_VERSION / SLUICE_CACHE (see scripts/kafka), SLUICE_SECURE_PORT /
# SLUICE_SECURE_DIR (see scripts/kafka-secure).

GO           ?= go
PKGS         ?= ./...
TEST_TIMEOUT ?= 40m
BROKER_TESTS ?= ^Test(Integration|Crash)
SECURE_TESTS ?= ^TestIntegrationSecure
GOTESTFLAGS  ?=

export GO PKGS TEST_TIMEOUT BROKER_TESTS SECURE_TESTS GOTESTFLAGS

.PHONY: test test-kfake test-broker test-bench test-cluster test-secure test-short vet fmt-check check kafka-start kafka-stop kafka-status

test:
	scripts/test-all all

test-kfake:
	scripts/test-all kfake

test-broker:
	scripts/test-all broker

test-bench:
	scripts/test-all bench

test-cluster:
	scripts/test-all cluster

test-secure:
	scripts/test-all secure

test-short:
	$(GO) test -short -race -count=1 $(GOTESTFLAGS) $(PKGS)

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out=$$(find . -name '*.go' -not -path './vendor/*' -not -path '*/testdata/*' -exec gofmt -l {} +); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

check: fmt-check vet test

kafka-start:
	scripts/kafka start

kafka-stop:
	scripts/kafka stop

kafka-status:
	scripts/kafka status
