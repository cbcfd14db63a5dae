"""What RecipeUser asks for and how its reply is judged: a recipe as JSON, with or without a schema.

``--recipe-format schema`` (the default) sends :data:`RECIPE_SCHEMA` as structured output (Ollama's
``format: <schema>``, OpenAI's ``response_format: {"type": "json_schema", ...}``) and validates the reply
against that same schema with ``jsonschema`` (:func:`check_schema`: the failure text names the field).
``--recipe-format json`` is the older request — any JSON object (``format: "json"`` / ``json_object``) —
judged by :func:`check_recipe` (an object with a title, ingredients and steps).

The lengths are bounded (``maxItems``, ``maxLength``) so that a constrained model always finishes the
object: at most 60 + 6 × 30 + 4 × 80 characters of text, plus the JSON around it and the whitespace a
JSON grammar allows. Most recipes take 50-150 tokens; a degenerate one ("1-2-3-4-…") costs a token per
character, so give RecipeUser a ``--num-predict`` of 512 (an unbounded schema lets a small model write
steps until the token limit cuts the JSON off: then the reply is invalid, and the failure is the
schema's, not the server's).
"""

from __future__ import annotations

import functools

import orjson

from ollama_locust.options import RECIPE_FORMATS

RECIPE_SCHEMA: dict = {
    "title": "recipe",
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 1, "maxLength": 60},
        "ingredients": {"type": "array", "minItems": 1, "maxItems": 6,
                        "items": {"type": "string", "minLength": 1, "maxLength": 30}},
        "steps": {"type": "array", "minItems": 1, "maxItems": 4,
                  "items": {"type": "string", "minLength": 1, "maxLength": 80}},
    },
    "required": ["title", "ingredients", "steps"],
    "additionalProperties": False,
}


def request_format(recipe_format: str) -> "bool | dict":
    """The client's ``json_format`` for ``--recipe-format``: the schema, or True (any JSON object)."""
    if recipe_format not in RECIPE_FORMATS:
        raise ValueError(f"--recipe-format {recipe_format!r}: choose one of {', '.join(RECIPE_FORMATS)}")
    return RECIPE_SCHEMA if recipe_format == "schema" else True


def _parse(text: str) -> tuple[object, str | None]:
    """(object, None) for a JSON reply (a fenced ```json block too), else (None, why not)."""
    body = text.strip()
    if body.startswith("```"):  # a fenced block is still the JSON the app asked for
        body = body.strip("`").strip()
        if body[:4].lower() == "json":
            body = body[4:]
    try:
        return orjson.loads(body), None
    except orjson.JSONDecodeError:
        return None, f"recipe reply is not valid JSON: {' '.join(text[:60].split())!r}"


def check_recipe(text: str) -> str | None:
    """None when ``text`` is a recipe: a JSON object with a title, ingredients and steps; else why not."""
    obj, problem = _parse(text)
    if problem:
        return problem
    if not isinstance(obj, dict):
        return f"recipe reply is JSON but not an object ({type(obj).__name__})"
    missing = [key for key in ("title", "ingredients", "steps") if not obj.get(key)]
    if missing:
        return f"recipe JSON lacks {', '.join(missing)}"
    if not isinstance(obj["title"], str):
        return "recipe JSON: title is not a string"
    for key in ("ingredients", "steps"):
        if not isinstance(obj[key], list):
            return f"recipe JSON: {key} is not a list"
    return None


@functools.lru_cache(maxsize=1)
def _validator():
    import jsonschema  # imported where it is used: load processes that run no RecipeUser never pay for it

    cls = jsonschema.validators.validator_for(RECIPE_SCHEMA)
    cls.check_schema(RECIPE_SCHEMA)
    return cls(RECIPE_SCHEMA)


def prepare_schema_check() -> None:
    """Build the schema validator now (importing jsonschema takes ~100 ms): a load process does it before its
    users start (``users.prepare_load_process``), not at the first recipe reply, where it blocked the hub."""
    _validator()


def check_schema(text: str) -> str | None:
    """None when ``text`` is JSON that :data:`RECIPE_SCHEMA` accepts; else which field failed and why."""
    obj, problem = _parse(text)
    if problem:
        return problem
    import jsonschema

    error = jsonschema.exceptions.best_match(_validator().iter_errors(obj))
    if error is None:
        return None
    where = error.json_path if error.path else "the reply"
    message = " ".join(error.message.split())
    if len(message) > 120:
        message = message[:117] + "..."
    return f"recipe JSON fails the schema at {where} ({error.validator}): {message}"


def checker(recipe_format: str):
    """The reply check for ``--recipe-format``."""
    return check_schema if recipe_format == "schema" else check_recipe
