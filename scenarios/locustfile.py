"""The locustfile: users, the shape and the project's options. Thin on purpose.

    locust -f locustfile.py --host http://127.0.0.1:11434            # web UI on :8089
    locust -f locustfile.py --headless --host ... --shape step --steps 1,3,5 --step-time 30s

The top-level ``locustfile.py`` of the repository re-exports this module; ``ollama-locust step`` runs
this file directly, so it works from any install.
"""

from locust import events

from ollama_locust.scenarios import plugin
from ollama_locust.scenarios.shapes import LLMShape
from ollama_locust.scenarios.users import BurstyUser, RecipeUser, StudentUser

plugin.register(events)

__all__ = ["BurstyUser", "LLMShape", "RecipeUser", "StudentUser"]
