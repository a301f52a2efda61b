#!/usr/bin/env python3
"""Writes the tiny GGUF the song writer's tests run llama.cpp on.

The model is a 2-layer llama with random weights (n_embd 64, 4 heads, n_ff 128) and a
SentencePiece-style vocabulary of about 560 tokens: <unk>, <s>, </s>, the two ChatML control tokens,
256 byte tokens (<0x00>..<0xFF>) so any UTF-8 text tokenises, the printable ASCII characters, and
word pieces built up one character at a time (SentencePiece merges need every prefix). It carries a
ChatML chat template and `add_space_prefix = false`.

Its output is gibberish, but llama.cpp loads it, samples it deterministically for a fixed seed, and a
grammar makes it write valid JSON, which is all the tests need. Everything is seeded, so running
the script again reproduces the committed file byte for byte:

    pip install 'gguf==0.19.*' numpy
    python3 tools/tinygguf/make_tiny_gguf.py worker/tests/fixtures/tiny-songwriter.gguf
"""

import sys

import numpy as np
from gguf import GGUFWriter, TokenType

SEED = 20261128
N_EMBD = 64
N_HEAD = 4
N_LAYER = 2
N_FF = 128
CONTEXT = 4096

CHATML = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Words a song (and the JSON around it) is made of. Each becomes "▁word" plus all its prefixes.
WORDS = """
the and you love night city rain light heart dream fire sky time home road blue gold slow
verse chorus bridge outro intro title caption lyrics bpm keyscale major minor language
timesignature soft warm neon tape piano guitar drums bass synth beat song dance moon star
""".split()


def vocabulary():
    tokens = [("<unk>", TokenType.UNKNOWN), ("<s>", TokenType.CONTROL), ("</s>", TokenType.CONTROL),
              ("<|im_start|>", TokenType.CONTROL), ("<|im_end|>", TokenType.CONTROL)]
    tokens += [(f"<0x{b:02X}>", TokenType.BYTE) for b in range(256)]
    seen = {t for t, _ in tokens}

    def add(piece):
        if piece not in seen:
            seen.add(piece)
            tokens.append((piece, TokenType.NORMAL))

    add("\u2581")  # SentencePiece's space
    for c in range(0x21, 0x7F):
        add(chr(c))
    for word in WORDS:
        piece = "\u2581" + word
        for end in range(2, len(piece) + 1):
            add(piece[:end])
    for piece in ['{"', '":', '",', '"}', '\\n', "[v", "[c", "]\\n"]:
        add(piece)
    return tokens


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "worker/tests/fixtures/tiny-songwriter.gguf"
    rng = np.random.default_rng(SEED)
    tokens = vocabulary()
    n_vocab = len(tokens)

    w = GGUFWriter(out, "llama")
    w.add_name("ace-radio tiny songwriter (random weights, tests only)")
    w.add_context_length(CONTEXT)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD)
    w.add_rope_dimension_count(N_EMBD // N_HEAD)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(n_vocab)
    w.add_file_type(1)  # mostly f16

    w.add_tokenizer_model("llama")
    w.add_token_list([t for t, _ in tokens])
    # Longer pieces score higher, so merges prefer them; ties broken by order.
    w.add_token_scores([float(len(t)) - i * 1e-4 if ty == TokenType.NORMAL else 0.0
                        for i, (t, ty) in enumerate(tokens)])
    w.add_token_types([int(ty) for _, ty in tokens])
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(4)  # <|im_end|> ends a ChatML turn
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(False)
    w.add_chat_template(CHATML)

    def dense(rows, cols, scale):
        return (rng.standard_normal((rows, cols)) * scale).astype(np.float16)

    w.add_tensor("token_embd.weight", dense(n_vocab, N_EMBD, 1.0))
    for layer in range(N_LAYER):
        p = f"blk.{layer}."
        w.add_tensor(p + "attn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            w.add_tensor(p + name + ".weight", dense(N_EMBD, N_EMBD, N_EMBD ** -0.5))
        w.add_tensor(p + "ffn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        w.add_tensor(p + "ffn_gate.weight", dense(N_FF, N_EMBD, N_EMBD ** -0.5))
        w.add_tensor(p + "ffn_up.weight", dense(N_FF, N_EMBD, N_EMBD ** -0.5))
        w.add_tensor(p + "ffn_down.weight", dense(N_EMBD, N_FF, N_FF ** -0.5))
    w.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    w.add_tensor("output.weight", dense(n_vocab, N_EMBD, 0.5))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {out}: {n_vocab} tokens, {N_LAYER} layers, n_embd {N_EMBD}")


if __name__ == "__main__":
    main()
