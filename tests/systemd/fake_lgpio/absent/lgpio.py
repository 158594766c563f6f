"""Put first on ``PYTHONPATH``, this makes ``import lgpio`` fail as on a venv without it."""

raise ModuleNotFoundError("No module named 'lgpio'", name="lgpio")
