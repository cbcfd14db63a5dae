"""Prompt sets: the questions the users ask, loaded from data files and validated.

Built-in sets live in ``scenarios/prompts/`` (``school.json``, ``recipes.json``). ``--prompts FILE``
replaces the sets that FILE defines (a set FILE does not define stays built-in). Formats:

* ``.json``: an object with any of
  ``"school": [{"text": str, "lang": str, "length": "short"|"long"}, ...]`` (a bare string is a short
  question of unknown language), ``"followups": {"<lang>": [str, ...]}`` (later turns of a student's
  conversation), ``"recipes": [{"ingredients": [str, ...]}, ...]``; or a list of school questions.
* ``.jsonl``: one object per line: a school question (``{"text": ...}``) or a recipe
  (``{"ingredients": [...]}``).
* anything else (``.txt``): one school question per non-empty line (``#`` starts a comment).

:func:`load_prompts` is a pure function (no Locust, no gevent): the preflight calls it before any user
starts, and a bad file raises :class:`PromptsError` whose message is one line naming the file and
what is wrong in it.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field

import orjson

BUILTIN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "prompts")
BUILTIN_FILES = ("school.json", "recipes.json")
LENGTHS = ("short", "long")
MAX_PROMPT_CHARS = 100_000


class PromptsError(ValueError):
    """A prompt set file is missing or malformed; the message is one line."""


@dataclass(frozen=True)
class SchoolPrompt:
    text: str
    lang: str = "?"
    length: str = "short"


@dataclass(frozen=True)
class RecipePrompt:
    ingredients: tuple[str, ...]


@dataclass(frozen=True)
class PromptSet:
    school: tuple[SchoolPrompt, ...] = ()
    recipes: tuple[RecipePrompt, ...] = ()
    followups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    source: str = "built-in"

    def followups_for(self, lang: str) -> tuple[str, ...]:
        """Follow-up questions in ``lang`` (English when there are none in it)."""
        return self.followups.get(lang) or self.followups.get("en") or DEFAULT_FOLLOWUPS


DEFAULT_FOLLOWUPS = ("Can you explain that more simply?", "Can you give me an example?", "Why is that?")

RECIPE_INSTRUCTION = (
    'Answer only with a JSON object with the keys "title" (a string), "ingredients" (a list of strings) '
    'and "steps" (a list of strings), and nothing else.'
)


def recipe_prompt(recipe: RecipePrompt) -> str:
    """The question a kitchen app asks for one ingredient list (with the JSON instruction)."""
    return f"Suggest a recipe I can cook with: {', '.join(recipe.ingredients)}. {RECIPE_INSTRUCTION}"


def load_prompts(path: str | None = None) -> PromptSet:
    """The prompt sets: built-in, with the sets defined in ``path`` (``--prompts``) replacing them.

    Raises :class:`PromptsError` (one line) when ``path`` cannot be read or is malformed.
    """
    builtin = _builtin()
    if not path:
        return builtin
    loaded = _parse_file(path)
    return PromptSet(
        school=loaded.get("school", builtin.school),
        recipes=loaded.get("recipes", builtin.recipes),
        followups=loaded.get("followups", builtin.followups),
        source=path,
    )


@functools.lru_cache(maxsize=1)
def _builtin() -> PromptSet:
    sets: dict = {}
    for name in BUILTIN_FILES:
        sets.update(_parse_file(os.path.join(BUILTIN_DIR, name)))
    return PromptSet(sets.get("school", ()), sets.get("recipes", ()), sets.get("followups", {}), "built-in")


@functools.lru_cache(maxsize=8)
def load_cached(path: str | None) -> PromptSet:
    """:func:`load_prompts`, once per path and process (the users share one set)."""
    return load_prompts(path)


def _parse_file(path: str) -> dict:
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise PromptsError(f"prompts file {path}: cannot read it ({exc.strerror or exc})") from None
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PromptsError(f"prompts file {path}: not UTF-8 text (byte {exc.start})") from None
    lower = path.lower()
    if lower.endswith(".json"):
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise PromptsError(f"prompts file {path}: invalid JSON ({exc})") from None
        sets = _parse_document(path, data)
    elif lower.endswith(".jsonl") or lower.endswith(".ndjson"):
        sets = _parse_jsonl(path, raw)
    else:
        sets = _parse_text(path, raw)
    if not any(sets.get(name) for name in ("school", "recipes")):
        raise PromptsError(f"prompts file {path}: no prompts in it (expected school questions or recipes)")
    return sets


def _parse_document(path: str, data) -> dict:
    if isinstance(data, list):
        data = {"school": data}
    if not isinstance(data, dict):
        raise PromptsError(f"prompts file {path}: expected a JSON object with 'school'/'recipes' or a list, got {type(data).__name__}")
    known = {"school", "recipes", "followups", "description"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise PromptsError(f"prompts file {path}: unknown key '{unknown[0]}'; expected one of school, recipes, followups")
    sets: dict = {}
    if "school" in data:
        items = data["school"]
        if not isinstance(items, list) or not items:
            raise PromptsError(f"prompts file {path}: 'school' must be a non-empty list")
        sets["school"] = tuple(_school(path, f"school[{i}]", item) for i, item in enumerate(items))
    if "recipes" in data:
        items = data["recipes"]
        if not isinstance(items, list) or not items:
            raise PromptsError(f"prompts file {path}: 'recipes' must be a non-empty list")
        sets["recipes"] = tuple(_recipe(path, f"recipes[{i}]", item) for i, item in enumerate(items))
    if "followups" in data:
        sets["followups"] = _followups(path, data["followups"])
    return sets


def _parse_jsonl(path: str, raw: bytes) -> dict:
    school, recipes = [], []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise PromptsError(f"prompts file {path}: line {number}: invalid JSON ({exc})") from None
        where = f"line {number}"
        if isinstance(item, dict) and "ingredients" in item:
            recipes.append(_recipe(path, where, item))
        else:
            school.append(_school(path, where, item))
    sets: dict = {}
    if school:
        sets["school"] = tuple(school)
    if recipes:
        sets["recipes"] = tuple(recipes)
    return sets


def _parse_text(path: str, raw: bytes) -> dict:
    school = []
    for number, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        school.append(_school(path, f"line {number}", text))
    return {"school": tuple(school)} if school else {}


def _text(path: str, where: str, value, what: str = "text") -> str:
    if not isinstance(value, str) or not value.strip():
        raise PromptsError(f"prompts file {path}: {where}: '{what}' must be a non-empty string")
    if len(value) > MAX_PROMPT_CHARS:
        raise PromptsError(f"prompts file {path}: {where}: prompt longer than {MAX_PROMPT_CHARS} characters")
    return value.strip()


def _school(path: str, where: str, item) -> SchoolPrompt:
    if isinstance(item, str):
        return SchoolPrompt(_text(path, where, item))
    if not isinstance(item, dict):
        raise PromptsError(f"prompts file {path}: {where}: expected a string or an object with 'text', got {type(item).__name__}")
    if "text" not in item:
        raise PromptsError(f"prompts file {path}: {where}: missing 'text'")
    lang = item.get("lang", "?")
    if not isinstance(lang, str) or not lang:
        raise PromptsError(f"prompts file {path}: {where}: 'lang' must be a language code like 'en'")
    length = item.get("length", "short")
    if length not in LENGTHS:
        raise PromptsError(f"prompts file {path}: {where}: 'length' must be short or long, not {length!r}")
    return SchoolPrompt(_text(path, where, item["text"]), lang, length)


def _recipe(path: str, where: str, item) -> RecipePrompt:
    if isinstance(item, dict):
        item = item.get("ingredients")
    if not isinstance(item, list) or not item:
        raise PromptsError(f"prompts file {path}: {where}: 'ingredients' must be a non-empty list of strings")
    return RecipePrompt(tuple(_text(path, where, value, "ingredients") for value in item))


def _followups(path: str, value) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, dict):
        raise PromptsError(f"prompts file {path}: 'followups' must be an object {{\"<lang>\": [questions]}}")
    out = {}
    for lang, items in value.items():
        if not isinstance(items, list) or not items:
            raise PromptsError(f"prompts file {path}: followups.{lang}: must be a non-empty list of strings")
        out[lang] = tuple(_text(path, f"followups.{lang}", item) for item in items)
    return out
