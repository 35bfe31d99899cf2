"""A seeded mutation fuzzer that drives the real ``tandem`` CLI in subprocesses.

``harness`` runs one command under a time and memory bound and checks the CLI's contract;
``*_mutators`` turn the valid seeds of ``seeds`` into hostile inputs, one kind each;
``campaign`` generates the cases, runs them, groups failures and writes the report.
``bench/fuzz.py`` is its command line; ``tests/test_fuzz_cli.py`` runs a fixed campaign in CI.
"""
