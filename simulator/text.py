"""Deterministic replies: the same prompt, model and seed always give the same tokens.

A token is a word-ish chunk (" tomato", ",", '{"'); ``eval_count`` is the number of chunks sent.
Recipe prompts get a recipe; ``format`` json/schema gets a valid JSON object (for recipes with
``title``, ``ingredients`` and ``steps``).
"""

from __future__ import annotations

import hashlib
import json
import random
import re

_TOKEN_RE = re.compile(r"\s*[\w']+|\s*[^\w\s]+|\s+")
_PROMPT_TOKEN_RE = re.compile(r"\w+|[^\w\s]")

CHAT_TEMPLATE_TOKENS = 10  # role headers and special tokens a chat template adds per message
GENERATE_TEMPLATE_TOKENS = 8

RECIPE_WORDS = ("recipe", "recette", "rezept", "receta", "ricetta", "cook", "dish", "ingredients", "bake")
INGREDIENTS = ("tomatoes", "onion", "garlic", "olive oil", "rice", "chickpeas", "lentils", "spinach", "carrots",
               "potatoes", "butter", "flour", "eggs", "milk", "lemon", "basil", "cumin", "paprika", "pasta",
               "chicken thighs", "mushrooms", "parmesan", "salt", "black pepper", "ginger", "coconut milk")
VERBS = ("Chop", "Heat", "Stir in", "Simmer", "Season", "Whisk", "Fold in", "Roast", "Add", "Serve with")
WORDS = ("the", "a", "of", "and", "to", "is", "in", "that", "it", "for", "as", "with", "this", "on", "are", "by",
         "answer", "question", "example", "because", "energy", "water", "cells", "light", "history", "number",
         "plants", "change", "important", "simple", "first", "then", "result", "shows", "means", "called",
         "process", "different", "between", "many", "people", "system", "small", "large", "equal", "part")


def tokenize(text: str) -> list[str]:
    """Split generated text into the chunks that are streamed one per line."""
    return _TOKEN_RE.findall(text)


def count_prompt_tokens(text: str) -> int:
    return len(_PROMPT_TOKEN_RE.findall(text))


def _rng(seed: int, *parts: str) -> random.Random:
    h = hashlib.sha256(("\x00".join([str(seed), *parts])).encode("utf-8", "surrogatepass")).digest()
    return random.Random(int.from_bytes(h[:8], "big"))


def is_recipe(prompt: str) -> bool:
    low = prompt.lower()
    return any(w in low for w in RECIPE_WORDS)


def reply_length(default_tokens: int, prompt: str, seed: int) -> int:
    """Tokens of an unconstrained reply: recipe-sized for recipe prompts, ~60 % for others, ±20 %."""
    base = default_tokens if is_recipe(prompt) else max(8, int(default_tokens * 0.6))
    return max(4, int(base * _rng(seed, "len", prompt).uniform(0.8, 1.2)))


def _title(prompt: str, rng: random.Random) -> str:
    words = [w for w in re.findall(r"[A-Za-zÀ-ÿ]+", prompt) if len(w) > 3 and w.lower() not in RECIPE_WORDS]
    main = words[rng.randrange(len(words))].capitalize() if words else "House"
    return f"{main} {rng.choice(('Stew', 'Bowl', 'Traybake', 'Soup', 'Skillet', 'Salad', 'Curry'))}"


def _recipe_object(prompt: str, rng: random.Random, size: int) -> dict:
    n_ing = max(3, min(12, size // 18))
    ingredients = [f"{rng.randint(1, 4)} {rng.choice(('cups', 'tbsp', 'tsp', 'pieces', 'cloves'))} "
                   f"{rng.choice(INGREDIENTS)}" for _ in range(n_ing)]
    steps = []
    budget = max(2, size - 10 - 4 * n_ing)
    while budget > 0:
        n = rng.randint(6, 12)
        steps.append(f"{rng.choice(VERBS)} the {rng.choice(INGREDIENTS)} " + " ".join(rng.choice(WORDS) for _ in range(n)) + ".")
        budget -= n + 5
    return {"title": _title(prompt, rng), "ingredients": ingredients, "steps": steps}


def _prose(rng: random.Random, n_tokens: int) -> str:
    out: list[str] = []
    sentence = 0
    while len(out) < n_tokens:
        w = rng.choice(WORDS)
        out.append((" " if out else "") + (w.capitalize() if sentence == 0 else w))
        sentence += 1
        if sentence > rng.randint(6, 14):
            out.append(".")
            sentence = 0
    return "".join(out[:n_tokens])


def reply_tokens(prompt: str, *, seed: int, model: str, length: int, fmt: object = None) -> list[str]:
    """The reply for a prompt as a list of streamed chunks, about ``length`` long.

    With ``fmt`` set (the request's ``format``), the chunks join to a valid JSON object.
    """
    rng = _rng(seed, model, prompt, "json" if fmt else "text")
    if fmt:
        if is_recipe(prompt):
            obj = _recipe_object(prompt, rng, length)
        else:
            obj = {"answer": _prose(rng, max(4, length - 8)).strip()}
            if isinstance(fmt, dict) and isinstance(fmt.get("properties"), dict):
                obj = {k: (obj["answer"] if i == 0 else _schema_value(v, rng))
                       for i, (k, v) in enumerate(fmt["properties"].items())} or obj
        return tokenize(json.dumps(obj, ensure_ascii=False))
    if is_recipe(prompt):
        r = _recipe_object(prompt, rng, length)
        text = (f"Here is a recipe for {r['title']}.\n\nIngredients:\n" + "\n".join(f"- {i}" for i in r["ingredients"])
                + "\n\nSteps:\n" + "\n".join(f"{n}. {s}" for n, s in enumerate(r["steps"], 1)))
        toks = tokenize(text)
        return toks[:length] if len(toks) >= length else toks + tokenize(_prose(rng, length - len(toks)))
    toks = tokenize(_prose(rng, length))
    return toks[:length]


def _schema_value(schema: object, rng: random.Random):
    t = schema.get("type") if isinstance(schema, dict) else None
    if t == "array":
        return [_schema_value(schema.get("items", {"type": "string"}), rng) for _ in range(rng.randint(2, 4))]
    if t in ("integer", "number"):
        return rng.randint(1, 10)
    if t == "boolean":
        return rng.random() < 0.5
    if t == "object":
        return {k: _schema_value(v, rng) for k, v in (schema.get("properties") or {}).items()}
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 5)))


def content_text(content: object) -> str:
    """A chat message's text: a string, or the text parts of OpenAI's content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""
