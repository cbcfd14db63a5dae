"""Deterministic replies: the same prompt, model and seed always give the same tokens.

A token is a word-ish chunk (" tomato", ",", '{"'); ``eval_count`` is the number of chunks sent.
Recipe prompts get a recipe; ``format: "json"`` gets a valid JSON object (for recipes with ``title``,
``ingredients`` and ``steps``), of the usual length (so a low num_predict cuts it, as it does on Ollama);
a JSON schema ``format`` gets an object that conforms to the schema and fits the request's num_predict.
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

    With ``fmt`` set (the request's ``format``), the chunks join to a valid JSON object; with a JSON
    schema (a dict) the object conforms to it (its required keys, types, ``minItems``/``maxItems``,
    ``minLength``/``maxLength``, ``enum``) and takes at most ``length`` chunks, as constrained decoding
    of a bounded schema does — the caller passes the request's num_predict as the upper bound.
    """
    rng = _rng(seed, model, prompt, "json" if fmt else "text")
    if isinstance(fmt, dict) and (fmt.get("type") == "object" or isinstance(fmt.get("properties"), dict)):
        return schema_reply(fmt, prompt, rng, length)
    if fmt:
        if is_recipe(prompt):
            obj = _recipe_object(prompt, rng, length)
        else:
            obj = {"answer": _prose(rng, max(4, length - 8)).strip()}
        return tokenize(json.dumps(obj, ensure_ascii=False))
    if is_recipe(prompt):
        r = _recipe_object(prompt, rng, length)
        text = (f"Here is a recipe for {r['title']}.\n\nIngredients:\n" + "\n".join(f"- {i}" for i in r["ingredients"])
                + "\n\nSteps:\n" + "\n".join(f"{n}. {s}" for n, s in enumerate(r["steps"], 1)))
        toks = tokenize(text)
        return toks[:length] if len(toks) >= length else toks + tokenize(_prose(rng, length - len(toks)))
    toks = tokenize(_prose(rng, length))
    return toks[:length]


def schema_reply(schema: dict, prompt: str, rng: random.Random, length: int) -> list[str]:
    """Chunks of a JSON object that conforms to ``schema`` and fits ``length`` chunks when it can.

    The object is drawn at a realistic size (arrays about half-way to their ``maxItems``, strings of a few
    words up to ``maxLength``), then drawn smaller until it fits; the smallest conforming object (every
    minimum) is the last resort, sent whole even when longer than ``length``.
    """
    state = rng.getstate()
    for scale in (1.0, 0.7, 0.5, 0.35, 0.25, 0.15, 0.0):
        rng.setstate(state)
        toks = tokenize(json.dumps(_schema_value(schema, rng, scale, prompt, ""), ensure_ascii=False))
        if len(toks) <= length:
            return toks
    return toks


def _fit(text: str, schema: dict) -> str:
    """Cut at a word boundary to ``maxLength`` characters; pad to ``minLength``."""
    top = schema.get("maxLength")
    if isinstance(top, int) and len(text) > top:
        cut = text[:top]
        text = cut.rsplit(" ", 1)[0] if " " in cut[1:] else cut
        text = text.rstrip(" ,;") or cut
    low = schema.get("minLength")
    if isinstance(low, int) and len(text) < low:
        text = (text + " " + "x" * low)[:max(low, len(text))] if text else "x" * low
    return text


def _string(name: str, schema: dict, rng: random.Random, scale: float, prompt: str) -> str:
    key = name.lower()
    if key in ("title", "name"):
        text = _title(prompt, rng)
    elif "ingredient" in key:
        text = f"{rng.randint(1, 4)} {rng.choice(('cups', 'tbsp', 'tsp', 'pieces', 'cloves'))} {rng.choice(INGREDIENTS)}"
    elif "step" in key or "instruction" in key:
        n = max(2, int(rng.randint(6, 14) * max(scale, 0.3)))
        text = f"{rng.choice(VERBS)} the {rng.choice(INGREDIENTS)} " + " ".join(rng.choice(WORDS) for _ in range(n)) + "."
    else:
        n = max(1, int(rng.randint(3, 12) * max(scale, 0.2)))
        text = " ".join(rng.choice(WORDS) for _ in range(n))
    return _fit(text, schema)


def _schema_value(schema: object, rng: random.Random, scale: float = 1.0, prompt: str = "", name: str = ""):
    if not isinstance(schema, dict):
        return _string(name, {}, rng, scale, prompt)
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return rng.choice(schema["enum"])
    if "const" in schema:
        return schema["const"]
    t = schema.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), "string")
    if t is None and isinstance(schema.get("properties"), dict):
        t = "object"
    if t == "object":
        props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        required = schema.get("required") if isinstance(schema.get("required"), list) else list(props)
        keys = [k for k in props if k in required or scale >= 0.5]
        return {k: _schema_value(props[k], rng, scale, prompt, k) for k in keys}
    if t == "array":
        low = schema.get("minItems") if isinstance(schema.get("minItems"), int) else (1 if scale > 0 else 0)
        top = schema.get("maxItems") if isinstance(schema.get("maxItems"), int) else max(low, 6)
        typical = low + (top - low) * 0.6 * scale
        n = max(low, min(top, int(round(rng.uniform(0.7, 1.1) * typical))))
        return [_schema_value(schema.get("items", {"type": "string"}), rng, scale, prompt, name) for _ in range(n)]
    if t in ("integer", "number"):
        low = schema.get("minimum", 1)
        top = schema.get("maximum", max(low, 10))
        return rng.randint(int(low), int(top)) if t == "integer" else round(rng.uniform(low, top), 1)
    if t == "boolean":
        return rng.random() < 0.5
    return _string(name, schema, rng, scale, prompt)


def content_text(content: object) -> str:
    """A chat message's text: a string, or the text parts of OpenAI's content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""
