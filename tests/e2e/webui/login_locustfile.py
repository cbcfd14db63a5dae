"""The project's locustfile with Locust's web login configured (no user can log in): for the auth test."""

from locust import events

from ollama_locust.scenarios.locustfile import BurstyUser, LLMShape, RecipeUser, StudentUser  # noqa: F401


@events.init.add_listener
def configure_login(environment, web_ui=None, **_kw):
    if web_ui is not None:
        web_ui.app.secret_key = "ollama-locust-test"
        web_ui.login_manager.user_loader(lambda user_id: None)
