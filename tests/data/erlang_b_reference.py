#!/usr/bin/env python3
"""Independent Erlang-B reference values for tests/it/erlang_reference.rs.

Computed with Python's decimal module at 60 significant digits using the *inverse*
recurrence I(0) = 1, I(n) = 1 + (n / A) * I(n - 1), B = 1 / I(n) -- a different algorithm
and arithmetic from the crate's f64 forward recurrence. Regenerate with:

    python3 tests/data/erlang_b_reference.py > tests/data/erlang_b_reference.csv
"""
from decimal import Decimal, getcontext

getcontext().prec = 60
ns = [1, 2, 5, 10, 18, 21, 50, 100, 1000, 10000, 100000]
loads = ["0.5", "10", "100", "1000", "10000", "100000"]
print("ports,load,blocking")
for load_text in loads:
    load = Decimal(load_text)
    inverse = Decimal(1)
    wanted = set(ns)
    for n in range(1, max(ns) + 1):
        inverse = 1 + (Decimal(n) / load) * inverse
        if n in wanted:
            print(f"{n},{load_text},{(1 / inverse):.17e}")
