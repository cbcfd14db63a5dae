"""RecipeUser's request and its judge: the JSON schema, its validation messages, the clients' payloads."""

import json

import jsonschema
import pytest

from ollama_locust import options
from ollama_locust.scenarios.clients import OllamaChatClient, OllamaGenerateClient, OpenAIClient
from ollama_locust.scenarios.recipe import RECIPE_SCHEMA, check_recipe, check_schema, checker, request_format

GOOD = {"title": "Leek soup", "ingredients": ["2 leeks", "1 potato"], "steps": ["Chop.", "Simmer 20 min."]}


def test_schema_is_valid_and_bounded():
    jsonschema.validators.validator_for(RECIPE_SCHEMA).check_schema(RECIPE_SCHEMA)
    props = RECIPE_SCHEMA["properties"]
    assert set(RECIPE_SCHEMA["required"]) == {"title", "ingredients", "steps"}
    assert props["title"]["maxLength"] and props["ingredients"]["maxItems"] and props["steps"]["maxItems"]
    assert props["ingredients"]["items"]["maxLength"] and props["steps"]["items"]["maxLength"]


@pytest.mark.parametrize("reply,expected", [
    (json.dumps(GOOD), None),
    ("```json\n" + json.dumps(GOOD) + "\n```", None),
    ('{"title": "Soup", "ingredients": ["leek"], "steps": ["Chop the', "not valid JSON"),
    (json.dumps({**GOOD, "steps": []}), "at $.steps (minItems)"),
    (json.dumps({**GOOD, "title": "x" * 61}), "at $.title (maxLength)"),
    (json.dumps({**GOOD, "ingredients": ["a"] * 7}), "at $.ingredients (maxItems)"),
    (json.dumps({**GOOD, "steps": ["ok", 3]}), "at $.steps[1] (type)"),
    (json.dumps({"title": "Soup", "ingredients": ["leek"]}), "at the reply (required): 'steps' is a required property"),
    (json.dumps({**GOOD, "calories": 300}), "(additionalProperties)"),
    (json.dumps([GOOD]), "at the reply (type)"),
])
def test_check_schema_names_the_field(reply, expected):
    problem = check_schema(reply)
    if expected is None:
        assert problem is None
    else:
        assert problem and expected in problem, problem


def test_json_format_keeps_the_old_check():
    assert check_recipe(json.dumps({**GOOD, "calories": 300, "title": "x" * 100})) is None  # no schema bounds
    assert check_recipe(json.dumps({"title": "Soup"})) == "recipe JSON lacks ingredients, steps"
    assert checker("json") is check_recipe and checker("schema") is check_schema
    assert request_format("json") is True and request_format("schema") is RECIPE_SCHEMA
    with pytest.raises(ValueError, match="--recipe-format 'yaml'"):
        request_format("yaml")


def test_option_declared_once_with_schema_default():
    assert options.default("recipe_format") == "schema"
    row = next(o for o in options.LOAD_OPTIONS if o.dest == "recipe_format")
    assert row.choices == ("schema", "json")


def test_payloads_carry_the_schema():
    messages = [{"role": "user", "content": "leeks"}]
    chat = OllamaChatClient("http://127.0.0.1:9", "m").payload(messages, RECIPE_SCHEMA)
    generate = OllamaGenerateClient("http://127.0.0.1:9", "m").payload(messages, RECIPE_SCHEMA)
    assert chat["format"] == RECIPE_SCHEMA and generate["format"] == RECIPE_SCHEMA
    openai = OpenAIClient("http://127.0.0.1:9", "m").payload(messages, RECIPE_SCHEMA)
    assert openai["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "recipe", "strict": True, "schema": RECIPE_SCHEMA}}
    assert OpenAIClient("http://127.0.0.1:9", "m").payload(messages, True)["response_format"] == {"type": "json_object"}
    assert OllamaChatClient("http://127.0.0.1:9", "m").payload(messages, True)["format"] == "json"
