"""The load model: streaming LLM clients, Locust users, shapes and request records.

Kept import-free on purpose: `reports` reads `ollama_locust.contract` without pulling in locust/gevent.
Import what you need from the submodules (`scenarios.users`, `scenarios.shapes`, ...).
"""
