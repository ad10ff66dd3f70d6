"""Test support: an in-process backend for exercising the engine itself."""
