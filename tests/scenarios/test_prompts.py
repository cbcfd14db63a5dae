"""Prompt sets: the built-in data files and --prompts validation (no network)."""

import pytest

from ollama_locust.scenarios.prompts import PromptsError, load_prompts, recipe_prompt


def test_builtin_sets_cover_languages_and_lengths():
    prompts = load_prompts()
    langs = {p.lang for p in prompts.school}
    assert {"en", "de", "ru", "zh"} <= langs
    for lang in ("en", "de", "ru", "zh"):
        assert {p.length for p in prompts.school if p.lang == lang} == {"short", "long"}
        assert prompts.followups_for(lang)
    assert len(prompts.recipes) >= 10
    text = recipe_prompt(prompts.recipes[0])
    assert '"title"' in text and '"steps"' in text and prompts.recipes[0].ingredients[0] in text


def test_replacement_json_keeps_undefined_sets(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('{"school": ["Was ist Pi?", {"text": "Long one", "lang": "en", "length": "long"}]}')
    prompts = load_prompts(str(path))
    assert [p.text for p in prompts.school] == ["Was ist Pi?", "Long one"]
    assert prompts.recipes == load_prompts().recipes  # not defined in the file: built-in
    assert prompts.source == str(path)


def test_jsonl_and_text(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"text": "Q1", "lang": "en"}\n\n{"ingredients": ["eggs", "rice"]}\n')
    prompts = load_prompts(str(path))
    assert prompts.school[0].text == "Q1" and prompts.recipes[0].ingredients == ("eggs", "rice")
    txt = tmp_path / "p.txt"
    txt.write_text("# comment\nWhy?\n\nHow?\n")
    assert [p.text for p in load_prompts(str(txt)).school] == ["Why?", "How?"]


@pytest.mark.parametrize("name,content,message", [
    ("bad.json", "{not json", "invalid JSON"),
    ("bad.json", '{"school": []}', "'school' must be a non-empty list"),
    ("bad.json", '{"schol": ["x"]}', "unknown key 'schol'"),
    ("bad.json", '{"school": [{"lang": "en"}]}', "school[0]: missing 'text'"),
    ("bad.json", '{"school": [{"text": "x", "length": "medium"}]}', "'length' must be short or long"),
    ("bad.json", '{"recipes": [{"ingredients": []}]}', "'ingredients' must be a non-empty list"),
    ("bad.json", '42', "expected a JSON object"),
    ("bad.jsonl", '{"text": "ok"}\n{oops\n', "line 2: invalid JSON"),
    ("bad.txt", "\n# only a comment\n", "no prompts in it"),
])
def test_malformed_files_give_one_clear_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(PromptsError) as info:
        load_prompts(str(path))
    text = str(info.value)
    assert message in text and str(path) in text and "\n" not in text


def test_missing_file(tmp_path):
    with pytest.raises(PromptsError, match="cannot read it"):
        load_prompts(str(tmp_path / "nope.json"))
