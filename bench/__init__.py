"""Benchmarks of pi-live-voice against the local Gemini Live stand-in (``make bench``).

``python -m bench.run`` measures gate correctness under races and faults side by side with the
clients people usually write, the daemon's reaction latencies, and its cost, then writes
``report.md``, ``report.json`` and plots.
"""
