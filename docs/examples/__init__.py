"""The code shown in the documentation: every block is a real module here,
included with ``literalinclude`` and exercised by ``tests/test_docs.py``."""
