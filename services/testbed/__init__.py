"""Real parts run locally for the tests and the bench alike: the MQTT broker.

Here, not under ``tests/``, so that the bench (and a developer's script) can start them
without importing the test suite.
"""
