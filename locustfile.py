"""Entry for `locust -f locustfile.py`: the project's users, shape and options (see scenarios/locustfile.py)."""

from scenarios.locustfile import BurstyUser, LLMShape, RecipeUser, StudentUser  # noqa: F401
