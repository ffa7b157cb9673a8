"""Simulators of the systems outside Tuoyu, for ``make run`` and the tests.

Only what lies outside Tuoyu is simulated (the public-security records inquiry, the finance
system); Tuoyu's own services always run for real. Each simulator speaks the HTTP contract the
real system's adapter is written against, documented in its module.
"""
