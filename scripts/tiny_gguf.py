#!/usr/bin/env python3
"""Write a tiny llama-architecture GGUF model that llama.cpp loads and serves.

No model download is possible where the tests run, so the project writes its own model: random
weights, a byte-level vocabulary, and one trick that makes it behave like a well-mannered chat model
under load — every request runs to ``max_tokens`` and prints plain ASCII text.

    python scripts/tiny_gguf.py OUT.gguf --size test|realistic [--seed N]

or, from Python (the script is importable by path)::

    spec = importlib.util.spec_from_file_location("tiny_gguf", "scripts/tiny_gguf.py")
    ...; module.write_model(path, size="test", seed=0)

The vocabulary is ``<unk>``, ``<s>``, ``</s>``, the 256 byte tokens ``<0x00>``…``<0xFF>`` and "▁": the
llama (SentencePiece) tokenizer falls back to bytes for every character, so any text tokenizes.

The trick: hidden channel ``c`` (the last one) of the residual stream is a large constant ``K`` in every
token embedding, and no layer writes to it (the rows of ``attn_output`` and ``ffn_down`` that would are
zero; the norms in front of the layers give it weight 0, so no layer reads it either). Because ``K``
dominates the root mean square, after ``output_norm`` (weight ``1/sqrt(E)`` on that channel) it is ≈ 1
whatever the layers did, and the output head's column for it is a per-token bias: 0 for the text
characters in ``TEXT_BYTES``, ``-SUPPRESS`` for everything else (end-of-sequence, control tokens, other
bytes). The random part of the logits is a few units wide, so sampling picks varied text characters and
never ends early. ``TEXT_BYTES`` holds no ``<`` either, so generated text never starts a stop string
such as ``</s>`` or ``<|im_end|>`` (which would make the server hold chunks back).

Same size and seed → byte-identical file.
"""

from __future__ import annotations

import argparse
import string
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ARCH = "llama"
SPACE = "\u2581"  # "▁", SentencePiece's word boundary
SPECIAL = ("<unk>", "<s>", "</s>")
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
FIRST_BYTE_ID = len(SPECIAL)
SPACE_ID = FIRST_BYTE_ID + 256
N_VOCAB = SPACE_ID + 1

# The characters the model may generate: one byte = one token = one streamed chunk.
TEXT_BYTES = (string.ascii_letters + string.digits + " .,!?'-").encode("ascii")
SUPPRESS = 50.0  # logit penalty of every other token; the random logits are ~1.5 wide

# A ChatML-like template, so /v1/chat/completions works without --chat_format.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@dataclass(frozen=True)
class Size:
    """One model size: the shape, and the tensor type of the matrices (norms are always F32)."""

    name: str
    n_embd: int
    n_layer: int
    n_head: int
    n_ff: int
    dtype: str  # "F32" or "F16"
    n_ctx: int = 4096
    help: str = ""


SIZES = {
    s.name: s
    for s in (
        Size("test", n_embd=64, n_layer=2, n_head=4, n_ff=192, dtype="F32",
             help="0.6 MB, ~1,100-2,100 tokens/s: the fast default for tests"),
        Size("realistic", n_embd=512, n_layer=8, n_head=8, n_ff=1536, dtype="F16",
             help="55 MB, ~200 tokens/s on one CPU thread: a speed like a small model on a small box"),
    )
}


def token_table() -> tuple[list[str], list[int]]:
    """The vocabulary and its token types (BYTE type makes ``<0x41>`` print as ``A``)."""
    import gguf

    tokens = list(SPECIAL) + [f"<0x{b:02X}>" for b in range(256)] + [SPACE]
    types = ([gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
             + [gguf.TokenType.BYTE] * 256 + [gguf.TokenType.NORMAL])
    return tokens, [int(t) for t in types]


def output_bias() -> np.ndarray:
    """Per-token logit bias: 0 for the text characters, ``-SUPPRESS`` for every other token."""
    bias = np.full(N_VOCAB, -SUPPRESS, dtype=np.float32)
    bias[[FIRST_BYTE_ID + b for b in TEXT_BYTES]] = 0.0
    return bias


def build_tensors(size: Size, seed: int) -> dict[str, np.ndarray]:
    """All weights, named as llama.cpp expects; numpy shape is (out, in)."""
    rng = np.random.default_rng(seed)
    e, ff = size.n_embd, size.n_ff
    c = e - 1  # the reserved constant channel
    k_const = 16.0 * np.sqrt(e)  # dominates the rms: other channels are O(1)
    gain = k_const / np.sqrt(e)  # undoes the norm's shrinking of the other channels

    def matrix(rows: int, cols: int, scale: float = 0.5) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * (scale / np.sqrt(cols))).astype(np.float32)

    def norm_weight(reserved: float) -> np.ndarray:
        w = np.full(e, gain, dtype=np.float32)
        w[c] = reserved
        return w

    embd = rng.standard_normal((N_VOCAB, e)).astype(np.float32)
    embd[:, c] = k_const

    out = (rng.standard_normal((N_VOCAB, e)) * (1.5 / np.sqrt(e))).astype(np.float32)
    out[:, c] = output_bias()

    tensors = {"token_embd.weight": embd}
    for i in range(size.n_layer):
        p = f"blk.{i}."
        tensors[p + "attn_norm.weight"] = norm_weight(0.0)  # layers never read channel c ...
        tensors[p + "attn_q.weight"] = matrix(e, e, 1.0)
        tensors[p + "attn_k.weight"] = matrix(e, e, 1.0)
        tensors[p + "attn_v.weight"] = matrix(e, e, 1.0)
        wo = matrix(e, e)
        wo[c, :] = 0.0  # ... and never write it
        tensors[p + "attn_output.weight"] = wo
        tensors[p + "ffn_norm.weight"] = norm_weight(0.0)
        tensors[p + "ffn_gate.weight"] = matrix(ff, e, 1.0)
        tensors[p + "ffn_up.weight"] = matrix(ff, e, 1.0)
        down = matrix(e, ff)
        down[c, :] = 0.0
        tensors[p + "ffn_down.weight"] = down
    tensors["output_norm.weight"] = norm_weight(1.0 / np.sqrt(e))  # channel c -> ≈ 1
    tensors["output.weight"] = out

    if size.dtype == "F16":
        for name, value in tensors.items():
            if value.ndim == 2:
                tensors[name] = value.astype(np.float16)
    return tensors


def write_model(path: str | Path, size: str = "test", seed: int = 0) -> Path:
    """Write the model to ``path`` and return it. ``size`` is a key of ``SIZES``."""
    import gguf

    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; available: {', '.join(SIZES)}")
    spec = SIZES[size]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokens, types = token_table()

    w = gguf.GGUFWriter(str(path), ARCH)
    w.add_name(f"ollama-locust tiny {spec.name}")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if spec.dtype == "F16" else gguf.LlamaFileType.ALL_F32)
    w.add_context_length(spec.n_ctx)
    w.add_embedding_length(spec.n_embd)
    w.add_block_count(spec.n_layer)
    w.add_feed_forward_length(spec.n_ff)
    w.add_head_count(spec.n_head)
    w.add_head_count_kv(spec.n_head)
    w.add_rope_dimension_count(spec.n_embd // spec.n_head)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(N_VOCAB)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * N_VOCAB)
    w.add_token_types(types)
    w.add_unk_token_id(UNK_ID)
    w.add_bos_token_id(BOS_ID)
    w.add_eos_token_id(EOS_ID)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)
    for name, value in build_tensors(spec, seed).items():
        w.add_tensor(name, value)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write a tiny llama-architecture GGUF model (random weights, byte vocabulary, "
                    "always runs to max_tokens with printable text).",
        epilog="sizes: " + "; ".join(f"{s.name}: n_embd {s.n_embd}, {s.n_layer} layers, {s.dtype} — {s.help}"
                                     for s in SIZES.values()),
    )
    parser.add_argument("out", help="the .gguf file to write")
    parser.add_argument("--size", choices=list(SIZES), default="test", help="model size (default: test)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default: 0)")
    args = parser.parse_args(argv)
    try:
        path = write_model(args.out, args.size, args.seed)
    except ImportError:
        print("tiny_gguf: the 'gguf' package is missing; install it with: pip install -e '.[engine]'",
              file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"tiny_gguf: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"{path} ({path.stat().st_size / 1e6:.1f} MB, size {args.size}, seed {args.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
