"""Loopback stand-ins for the outside APIs, for `syncd demo` and the tests."""
