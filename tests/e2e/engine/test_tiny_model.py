"""The model writer (scripts/tiny_gguf.py) and llama.cpp loading what it writes, in process."""

from __future__ import annotations

import subprocess
import sys

import pytest

from llama_engine import ENGINE_MISSING, WRITER, load_writer, write_tiny_model

PRINTABLE = {chr(b) for b in range(0x20, 0x7F)}


@pytest.fixture(scope="module")
def llama_cpp():
    return pytest.importorskip("llama_cpp", reason=ENGINE_MISSING)


def test_same_seed_writes_the_same_bytes(tmp_path):
    a = write_tiny_model(tmp_path / "a.gguf", seed=7)
    b = write_tiny_model(tmp_path / "b.gguf", seed=7)
    c = write_tiny_model(tmp_path / "c.gguf", seed=8)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    assert a.stat().st_size < 2_000_000


def test_written_file_has_the_metadata_and_tensors_llama_cpp_needs(tiny_model):
    gguf = pytest.importorskip("gguf", reason=ENGINE_MISSING)
    reader = gguf.GGUFReader(str(tiny_model))
    keys = set(reader.fields)
    for key in ("general.architecture", "llama.context_length", "llama.embedding_length",
                "llama.block_count", "llama.feed_forward_length", "llama.attention.head_count",
                "llama.attention.layer_norm_rms_epsilon", "tokenizer.ggml.model", "tokenizer.ggml.tokens",
                "tokenizer.ggml.token_type", "tokenizer.chat_template"):
        assert key in keys, key
    names = {t.name for t in reader.tensors}
    assert {"token_embd.weight", "output_norm.weight", "output.weight"} <= names
    for part in ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                 "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"):
        assert f"blk.1.{part}.weight" in names, part


def test_command_line_writes_a_model_and_rejects_an_unknown_size(tmp_path):
    pytest.importorskip("gguf", reason=ENGINE_MISSING)
    out = tmp_path / "cli.gguf"
    done = subprocess.run([sys.executable, str(WRITER), str(out), "--size", "test", "--seed", "3"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 0 and "seed 3" in done.stdout
    bad = subprocess.run([sys.executable, str(WRITER), str(tmp_path / "x.gguf"), "--size", "huge"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "invalid choice: 'huge'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_llama_cpp_generates_exactly_max_tokens_of_printable_text(llama_cpp, tiny_model):
    llm = llama_cpp.Llama(model_path=str(tiny_model), n_ctx=1024, verbose=False)
    # (An empty prompt is left out: llama.cpp strips a space right after the lone BOS when it
    # detokenizes, so the text would be one character short although 200 tokens were generated.)
    for prompt, temperature in (("Hello world", 0.8), ("Grüße, wie geht's? ✓", 0.0), ("x", 1.5)):
        out = llm.create_completion(prompt, max_tokens=200, temperature=temperature)
        choice = out["choices"][0]
        assert choice["finish_reason"] == "length"
        assert out["usage"]["completion_tokens"] == 200
        assert len(choice["text"]) == 200  # one byte token = one ASCII character
        assert set(choice["text"]) <= PRINTABLE


def test_any_text_tokenizes_through_the_byte_vocabulary(llama_cpp, tiny_model):
    llm = llama_cpp.Llama(model_path=str(tiny_model), n_ctx=256, verbose=False, vocab_only=True)
    text = "Rezept: Grüße ✓ 你好\n\ttabs"
    tokens = llm.tokenize(text.encode(), add_bos=False)
    assert llm.detokenize(tokens).decode().strip() == text
    assert llm.token_eos() == load_writer().EOS_ID


def test_realistic_size_loads_and_generates(llama_cpp, tmp_path):
    model = write_tiny_model(tmp_path / "realistic.gguf", size="realistic")
    assert model.stat().st_size > 20_000_000
    llm = llama_cpp.Llama(model_path=str(model), n_ctx=256, verbose=False)
    out = llm.create_completion("Hello", max_tokens=24)
    assert out["usage"]["completion_tokens"] == 24
    assert set(out["choices"][0]["text"]) <= PRINTABLE
