"""Runnable example apps for flask_streaming (see README.md)."""
