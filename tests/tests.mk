# tests/tests.mk: `make test`, included by the top-level Makefile.
test:
	@echo "tests not wired yet"
