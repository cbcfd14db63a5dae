"""Entry for `locust -f locustfile.py`: the project's users, shape and options (see
ollama_locust/scenarios/locustfile.py, in the repository scenarios/locustfile.py)."""

from ollama_locust.scenarios.locustfile import BurstyUser, LLMShape, RecipeUser, StudentUser  # noqa: F401
