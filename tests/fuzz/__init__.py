"""Property-based fuzzing of MPSNNGraph (issue 9, reliability): random valid graphs checked against
the float64 references of tests/reference, and random invalid graphs and inputs that must raise a
typed error naming the node. See tests/README.md for the short (CI) and long runs."""
