"""The official `ollama` Python client works against the simulator unchanged."""

import json

import ollama
import pytest


@pytest.fixture
def client(sim):
    return ollama.Client(host=sim(profile="instant", num_parallel=2))


def test_list_show_ps(client):
    assert [m.model for m in client.list().models] == ["llama3.2:latest"]
    show = client.show("llama3.2")
    assert show.details.family == "llama" and "completion" in show.capabilities
    assert client.ps().models == []
    client.generate(model="llama3.2", prompt="hi", options={"num_predict": 2})
    ps = client.ps().models
    assert ps[0].model == "llama3.2:latest" and ps[0].expires_at is not None and ps[0].context_length == 4096


def test_generate_and_chat_streaming_and_not(client):
    r = client.generate(model="llama3.2", prompt="Why is grass green?", options={"num_predict": 6, "seed": 3})
    assert r.done and r.done_reason == "length" and r.eval_count == 6 and r.response
    parts = list(client.generate(model="llama3.2", prompt="Why is grass green?", stream=True,
                                 options={"num_predict": 6, "seed": 3}))
    assert "".join(p.response for p in parts) == r.response and parts[-1].done
    c = client.chat(model="llama3.2", messages=[{"role": "user", "content": "A recipe with beans"}], format="json")
    recipe = json.loads(c.message.content)
    assert {"title", "ingredients", "steps"} <= set(recipe)
    chunks = list(client.chat(model="llama3.2", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert chunks[-1].done and chunks[-1].eval_count == len(chunks) - 1
    assert chunks[-1].total_duration >= chunks[-1].load_duration


def test_errors_surface_as_response_error(client):
    with pytest.raises(ollama.ResponseError) as e:
        client.chat(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 404 and e.value.error == "model 'nope' not found"
