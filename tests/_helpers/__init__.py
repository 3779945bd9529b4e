"""Helpers shared by the test packages: plain functions and constants, no fixtures and no tests.

Test modules import from here, never from another test module or from a ``conftest.py`` (pytest imports those itself;
importing them again by module path runs them twice and ties one test file to another's internals). Fixtures stay in
the ``conftest.py`` files, which build them from these helpers.
"""
