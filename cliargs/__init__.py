"""Command-line options generated from config dataclasses and function signatures (the Director, ``unimage bench``).

A leaf package: pure Python (standard library and ``docstring_parser``), importing nothing of the project, so
``bench`` (which must not import ``unimage``) and ``unimage`` share it.
"""

from cliargs.fields import add_dataclass_arguments, add_function_arguments, field_docs, flag_of, given_values

__all__ = ["add_dataclass_arguments", "add_function_arguments", "field_docs", "flag_of", "given_values"]
