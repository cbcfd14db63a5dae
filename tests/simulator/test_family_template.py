"""The chat template ``sim --engine llama-cpp`` uses for a model file without one (a Gemma base model)."""

import jinja2

from ollama_locust.simulator.llama_runner import GEMMA_TEMPLATE, family_template


def test_gemma_family_gets_gemma_turns():
    assert family_template("gemma3") is GEMMA_TEMPLATE and family_template("gemma") is GEMMA_TEMPLATE
    assert family_template("llama") is None
    text = jinja2.Template(GEMMA_TEMPLATE).render(
        bos_token="<bos>", add_generation_prompt=True,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi "},
                  {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Why is the sky blue?"}])
    assert text == ("<bos><start_of_turn>user\nBe brief.<end_of_turn>\n<start_of_turn>user\nHi<end_of_turn>\n"
                    "<start_of_turn>model\nHello.<end_of_turn>\n<start_of_turn>user\nWhy is the sky blue?<end_of_turn>\n"
                    "<start_of_turn>model\n")
