#!/usr/bin/env python3
"""Builds the tiny ACE-Step 1.5 model pack the tests run on.

Every role of ACESTEP.md section 1 becomes a small ONNX graph with the real tensor contract: the same
input/output dtypes, ranks and dynamic axes, and the fixed widths (64 latent channels, 128 context channels,
1024 text width, 2048 condition width, 1920 samples per latent frame). The weights are random and low-rank,
so the whole pack stays around a megabyte. What the graphs compute is meaningless musically, but every
graph depends on all of its inputs, so a host-side mistake (wrong order, wrong slice, wrong sign) changes
the result and the parity test against reference.py sees it.

Like the public export, some roles store fp16 weights behind f32 inputs/outputs, the token roles take
int64 ids, and the text encoder and the DiT keep their weights in a sibling `<name>.onnx.data` file
(ONNX external data).

Outputs (committed; regenerate with `python3 tools/tinypack/make_tiny_pack.py`):
  worker/assets/tiny-pack/                 the pack: graphs, tokenizer.json, silence_latent.npy,
                                           pack.toml (split graphs), pack-combined.toml (one condition graph)
  worker/tests/fixtures/lyric_encoder_overflow.onnx
                                           a lyric encoder whose fp16 cast overflows to inf (a pack error)
  worker/tests/fixtures/vae_decoder_f16_input.onnx
                                           a VAE decoder with a float16 `latents` input (a pack error)

Needs the PyPI packages onnx, numpy and tokenizers.
"""

from __future__ import annotations

import argparse
import pathlib
import shutil

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO = pathlib.Path(__file__).resolve().parents[2]
PACK_DIR = REPO / "worker" / "assets" / "tiny-pack"
FIXTURES_DIR = REPO / "worker" / "tests" / "fixtures"

# Widths fixed by the contract (ACESTEP.md section 1).
TEXT_WIDTH = 1024
COND_WIDTH = 2048
LATENT_CHANNELS = 64
CONTEXT_CHANNELS = 128
SAMPLES_PER_FRAME = 1920
TIMBRE_FRAMES = 750

# Sizes of the tiny model (free to choose).
RANK = 8  # low-rank factor of every wide matrix
DIT_WIDTH = 32
VAE_WIDTH = 16
SILENCE_FRAMES = 1500  # 60 s of silence latent: the longest track the tiny pack renders
OPSET = 18
IR_VERSION = 8

F32 = TensorProto.FLOAT
F16 = TensorProto.FLOAT16
I64 = TensorProto.INT64
BOOL = TensorProto.BOOL


class Graph:
    """Collects nodes and initializers; names every intermediate value uniquely."""

    def __init__(self, name: str, rng: np.random.Generator):
        self.name = name
        self.rng = rng
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self.counter = 0

    def fresh(self, hint: str) -> str:
        self.counter += 1
        return f"{hint}_{self.counter}"

    def input(self, name: str, dtype: int, shape: list) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, dtype, shape))
        return name

    def output(self, value: str, name: str, dtype: int, shape: list) -> None:
        self.op("Identity", [value], out=name)
        self.outputs.append(helper.make_tensor_value_info(name, dtype, shape))

    def const(self, array: np.ndarray, hint: str = "const") -> str:
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, inputs: list[str], out: str | None = None, **attrs) -> str:
        out = out or self.fresh(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=self.fresh("n_" + op_type), **attrs))
        return out

    def model(self) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.initializers)
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="ace-radio tinypack"
        )
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model)
        return model


def i64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


# ---------------------------------------------------------------------------------------------------------
# Building blocks shared by the split graphs and the combined condition graph (same weights in both).
# ---------------------------------------------------------------------------------------------------------


class Weights:
    """All random weights, drawn once so the split and combined graphs compute the same function."""

    def __init__(self, rng: np.random.Generator, vocab: int):
        def w(*shape, scale=1.0):
            return (rng.standard_normal(shape) * scale).astype(np.float32)

        self.text_embed = w(vocab, RANK, scale=1.0)
        self.text_out = w(RANK, TEXT_WIDTH, scale=0.5)
        self.tok_embed = w(vocab, RANK, scale=1.0)
        self.tok_out = w(RANK, TEXT_WIDTH, scale=0.3)
        self.proj_a = w(TEXT_WIDTH, RANK, scale=1.0 / np.sqrt(TEXT_WIDTH))
        self.proj_b = w(RANK, COND_WIDTH, scale=0.5)
        self.lyric_a = w(TEXT_WIDTH, RANK, scale=1.0 / np.sqrt(TEXT_WIDTH))
        self.lyric_b = w(RANK, COND_WIDTH, scale=0.5)
        self.timbre_a = w(LATENT_CHANNELS, RANK, scale=2.0)
        self.timbre_b = w(RANK, COND_WIDTH, scale=0.5)
        self.timbre_order = w(COND_WIDTH, scale=0.1)
        self.dit_in = w(2 * (LATENT_CHANNELS + CONTEXT_CHANNELS), DIT_WIDTH, scale=1.0 / np.sqrt(384))
        self.dit_q = w(DIT_WIDTH, RANK, scale=0.5)
        self.dit_k = w(COND_WIDTH, RANK, scale=1.0 / np.sqrt(COND_WIDTH))
        self.dit_v = w(COND_WIDTH, RANK, scale=1.0 / np.sqrt(COND_WIDTH))
        self.dit_vo = w(RANK, DIT_WIDTH, scale=1.0)
        self.dit_freq = w(DIT_WIDTH, scale=3.0)
        self.dit_phase_r = w(DIT_WIDTH, scale=1.0)
        self.dit_out = w(DIT_WIDTH, 2 * LATENT_CHANNELS, scale=1.0 / np.sqrt(DIT_WIDTH))
        self.vae_c1 = w(VAE_WIDTH, LATENT_CHANNELS, 3, scale=1.0 / np.sqrt(3 * LATENT_CHANNELS))
        self.vae_b1 = w(VAE_WIDTH, scale=0.1)
        self.vae_c2 = w(VAE_WIDTH, VAE_WIDTH, 3, scale=1.0 / np.sqrt(3 * VAE_WIDTH))
        self.vae_up = w(VAE_WIDTH, 2 * SAMPLES_PER_FRAME, scale=1.0 / np.sqrt(VAE_WIDTH))


def stored(g: Graph, array: np.ndarray, hint: str, fp16: bool) -> str:
    if not fp16:
        return g.const(array, hint)
    return g.op("Cast", [g.const(array.astype(np.float16), hint + "_fp16")], to=F32)


def causal_mean(g: Graph, x: str, ids_or_seq: str) -> str:
    """Running mean over the sequence axis (axis 1) of a [1, N, C] tensor: position i sees tokens 0..=i."""
    summed = g.op("CumSum", [x, g.const(np.array(1, dtype=np.int64), "axis")])
    seq_len = g.op("Gather", [g.op("Shape", [ids_or_seq]), g.const(np.array(1, dtype=np.int64))], axis=0)
    positions = g.op(
        "Range",
        [g.const(np.array(1, dtype=np.int64)), g.op("Add", [seq_len, g.const(np.array(1, dtype=np.int64))]),
         g.const(np.array(1, dtype=np.int64))],
    )
    positions = g.op("Reshape", [g.op("Cast", [positions], to=F32), g.const(i64(1, -1, 1))])
    return g.op("Div", [summed, positions])


def text_projector_body(g: Graph, wt: Weights, text: str, fp16: bool) -> str:
    """[1,T,1024] -> [1,T,2048], a linear map without bias (low-rank here)."""
    low = g.op("MatMul", [text, stored(g, wt.proj_a, "proj_a", fp16)])
    return g.op("MatMul", [low, stored(g, wt.proj_b, "proj_b", fp16)])


def lyric_encoder_body(g: Graph, wt: Weights, embeds: str, mask: str, fp16: bool) -> str:
    """[1,L,1024] + mask [1,L] -> [1,L,2048]."""
    low = g.op("Tanh", [g.op("MatMul", [embeds, stored(g, wt.lyric_a, "lyric_a", fp16)])])
    mask_f = g.op("Unsqueeze", [g.op("Cast", [mask], to=F32), g.const(i64(2))])
    low = g.op("Mul", [low, mask_f])
    mixed = g.op("Add", [low, causal_mean(g, low, embeds)])
    return g.op("MatMul", [mixed, stored(g, wt.lyric_b, "lyric_b", fp16)])


def timbre_encoder_body(g: Graph, wt: Weights, refer: str, order: str, fp16: bool) -> str:
    """[N,750,64] + order mask [N] -> [1,N,2048]."""
    pooled = g.op("ReduceMean", [refer, g.const(i64(1))], keepdims=0)  # [N,64]
    low = g.op("Tanh", [g.op("MatMul", [pooled, stored(g, wt.timbre_a, "timbre_a", fp16)])])
    embeds = g.op("MatMul", [low, stored(g, wt.timbre_b, "timbre_b", fp16)])  # [N,2048]
    order_f = g.op("Unsqueeze", [g.op("Cast", [order], to=F32), g.const(i64(1))])  # [N,1]
    embeds = g.op("Add", [embeds, g.op("Mul", [order_f, g.const(wt.timbre_order, "timbre_order")])])
    return g.op("Unsqueeze", [embeds, g.const(i64(0))])  # [1,N,2048]


# ---------------------------------------------------------------------------------------------------------
# The roles.
# ---------------------------------------------------------------------------------------------------------


def text_encoder(wt: Weights, rng) -> onnx.ModelProto:
    g = Graph("text_encoder", rng)
    ids = g.input("input_ids", I64, [1, "T"])
    e = g.op("Gather", [g.const(wt.text_embed, "embed"), ids], axis=0)  # [1,T,R]
    h = g.op("Tanh", [g.op("Add", [e, causal_mean(g, e, ids)])])
    g.output(g.op("MatMul", [h, g.const(wt.text_out, "out")]), "hidden_states", F32, [1, "T", TEXT_WIDTH])
    return g.model()


def token_embeddings(wt: Weights, rng) -> onnx.ModelProto:
    g = Graph("text_embed_tokens", rng)
    ids = g.input("input_ids", I64, [1, "L"])
    e = g.op("Gather", [stored(g, wt.tok_embed, "embed", True), ids], axis=0)
    g.output(g.op("MatMul", [e, stored(g, wt.tok_out, "out", True)]), "hidden_states", F32, [1, "L", TEXT_WIDTH])
    return g.model()


def text_projector(wt: Weights, rng) -> onnx.ModelProto:
    g = Graph("text_projector", rng)
    x = g.input("text_hidden_states", F32, [1, "T", TEXT_WIDTH])
    g.output(text_projector_body(g, wt, x, True), "projected_states", F32, [1, "T", COND_WIDTH])
    return g.model()


def lyric_encoder(wt: Weights, rng, overflow: bool = False) -> onnx.ModelProto:
    g = Graph("lyric_encoder", rng)
    x = g.input("inputs_embeds", F32, [1, "L", TEXT_WIDTH])
    mask = g.input("attention_mask", I64, [1, "L"])
    out = lyric_encoder_body(g, wt, x, mask, True)
    if overflow:
        # What the fp16 reference export does to the last MLP projection (about 5e5): beyond fp16's 65504.
        big = g.op("Mul", [out, g.const(np.array(5e5, dtype=np.float32))])
        out = g.op("Cast", [g.op("Cast", [big], to=F16)], to=F32)
    g.output(out, "last_hidden_state", F32, [1, "L", COND_WIDTH])
    return g.model()


def timbre_encoder(wt: Weights, rng) -> onnx.ModelProto:
    g = Graph("timbre_encoder", rng)
    refer = g.input("refer_audio", F32, ["N", TIMBRE_FRAMES, LATENT_CHANNELS])
    order = g.input("refer_audio_order_mask", I64, ["N"])
    g.output(timbre_encoder_body(g, wt, refer, order, True), "timbre_embeds", F32, [1, "N", COND_WIDTH])
    return g.model()


def dit_decoder(wt: Weights, rng) -> onnx.ModelProto:
    """Velocity from (noisy latents, timestep, condition, context). Patch size 2: F must be even."""
    g = Graph("dit_decoder", rng)
    x = g.input("hidden_states", F32, [1, "F", LATENT_CHANNELS])
    t = g.input("timestep", F32, [1])
    t_r = g.input("timestep_r", F32, [1])
    cond = g.input("encoder_hidden_states", F32, [1, "S", COND_WIDTH])
    ctx = g.input("context_latents", F32, [1, "F", CONTEXT_CHANNELS])

    joined = g.op("Concat", [ctx, x], axis=2)  # [1,F,192]
    # Patchify: two frames per token. A Reshape of an odd F fails, as in the real graph.
    patches = g.op("Reshape", [joined, g.const(i64(1, -1, 2 * (LATENT_CHANNELS + CONTEXT_CHANNELS)))])
    h = g.op("MatMul", [patches, g.const(wt.dit_in, "w_in")])  # [1,F/2,32]

    # One cross-attention from the tokens to the condition sequence.
    q = g.op("MatMul", [h, g.const(wt.dit_q, "w_q")])  # [1,F/2,R]
    k = g.op("MatMul", [cond, g.const(wt.dit_k, "w_k")])  # [1,S,R]
    v = g.op("MatMul", [cond, g.const(wt.dit_v, "w_v")])  # [1,S,R]
    scores = g.op("MatMul", [q, g.op("Transpose", [k], perm=[0, 2, 1])])
    scores = g.op("Mul", [scores, g.const(np.array(1.0 / np.sqrt(RANK), dtype=np.float32))])
    attended = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
    attended = g.op("MatMul", [attended, g.const(wt.dit_vo, "w_vo")])  # [1,F/2,32]

    # Timestep embedding from t and t_r.
    t_emb = g.op("Sin", [g.op("Add", [g.op("Mul", [t, g.const(wt.dit_freq, "freq")]),
                                      g.op("Mul", [t_r, g.const(wt.dit_phase_r, "phase_r")])])])
    h = g.op("Tanh", [g.op("Add", [g.op("Add", [h, attended]), t_emb])])
    out = g.op("MatMul", [h, g.const(wt.dit_out, "w_out")])  # [1,F/2,128]
    velocity = g.op("Reshape", [out, g.const(i64(1, -1, LATENT_CHANNELS))])
    g.output(velocity, "velocity", F32, [1, "F", LATENT_CHANNELS])
    return g.model()


def vae_decoder(wt: Weights, rng, f16_input: bool = False) -> onnx.ModelProto:
    """[1,64,F] -> [1,2,1920*F]. Two kernel-3 convolutions: each frame sees 2 frames either side, far
    inside the 64-frame overlap of the tiled decode, so tiled and untiled decodes agree.
    With `f16_input`, the latents input is float16: an export mistake the pack check must catch."""
    g = Graph("vae_decoder", rng)
    z = g.input("latents", F16 if f16_input else F32, [1, LATENT_CHANNELS, "F"])
    if f16_input:
        z = g.op("Cast", [z], to=F32)
    h = g.op("Conv", [z, stored(g, wt.vae_c1, "c1", True), g.const(wt.vae_b1, "b1")], pads=[1, 1])
    h = g.op("Tanh", [h])
    h = g.op("Tanh", [g.op("Conv", [h, stored(g, wt.vae_c2, "c2", True)], pads=[1, 1])])  # [1,16,F]
    frames = g.op("Transpose", [h], perm=[0, 2, 1])  # [1,F,16]
    samples = g.op("Tanh", [g.op("MatMul", [frames, stored(g, wt.vae_up, "up", True)])])  # [1,F,3840]
    samples = g.op("Mul", [samples, g.const(np.array(0.8, dtype=np.float32))])
    samples = g.op("Reshape", [samples, g.const(i64(1, -1, 2, SAMPLES_PER_FRAME))])
    planar = g.op("Transpose", [samples], perm=[0, 2, 1, 3])  # [1,2,F,1920]
    g.output(g.op("Reshape", [planar, g.const(i64(1, 2, -1))]), "waveform", F32, [1, 2, "audio_samples"])
    return g.model()


def condition_encoder(wt: Weights, rng) -> onnx.ModelProto:
    """The combined cut: text hidden + lyric embeddings + reference latents -> packed condition and context.
    Same weights as the split graphs (computed in f32 throughout), so both pack shapes agree."""
    g = Graph("condition_encoder", rng)
    text = g.input("text_hidden_states", F32, [1, "T", TEXT_WIDTH])
    text_mask = g.input("text_attention_mask", I64, [1, "T"])
    lyric = g.input("lyric_hidden_states", F32, [1, "L", TEXT_WIDTH])
    lyric_mask = g.input("lyric_attention_mask", I64, [1, "L"])
    refer = g.input("refer_audio_acoustic_hidden_states_packed", F32, [1, TIMBRE_FRAMES, LATENT_CHANNELS])
    order = g.input("refer_audio_order_mask", I64, [1])
    src = g.input("src_latents", F32, [1, "F", LATENT_CHANNELS])
    chunk = g.input("chunk_masks", F32, [1, "F", LATENT_CHANNELS])
    covers = g.input("is_covers", BOOL, [1])

    text_cond = text_projector_body(g, wt, text, True)
    text_cond = g.op("Mul", [text_cond, g.op("Unsqueeze", [g.op("Cast", [text_mask], to=F32), g.const(i64(2))])])
    lyric_cond = lyric_encoder_body(g, wt, lyric, lyric_mask, True)
    timbre = timbre_encoder_body(g, wt, refer, order, True)
    packed = g.op("Concat", [lyric_cond, timbre, text_cond], axis=1)
    # `is_covers` is false for text-to-music; it scales nothing here but must be a real input.
    covers_f = g.op("Cast", [covers], to=F32)
    packed = g.op("Add", [packed, g.op("Mul", [covers_f, g.const(np.array(0.0, dtype=np.float32))])])
    g.output(packed, "encoder_hidden_states", F32, [1, "S", COND_WIDTH])

    seq = g.op("Shape", [packed], start=1, end=2)
    g.output(g.op("ConstantOfShape", [g.op("Concat", [g.const(i64(1)), seq], axis=0)],
                  value=numpy_helper.from_array(np.array([1], dtype=np.int64))),
             "encoder_attention_mask", I64, [1, "S"])
    g.output(g.op("Concat", [src, chunk], axis=2), "context_latents", F32, [1, "F", CONTEXT_CHANNELS])
    return g.model()


# ---------------------------------------------------------------------------------------------------------
# Tokenizer, silence latent, manifests.
# ---------------------------------------------------------------------------------------------------------

CORPUS = [
    "# Instruction\nFill the audio semantic mask based on the given conditions:\n\n# Caption\n",
    "# Metas\n- bpm: N/A\n- timesignature: 4\n- keyscale: C major\n- duration: 30 seconds\n",
    "# Languages\nen\n\n# Lyric\n[Instrumental]",
    "[verse]\nneon rain on the window, city lights below\n[chorus]\nwe keep on dancing through the night\n",
    "dreamy lofi hip hop, soft piano, vinyl crackle, warm tape, mellow keys, late night city",
    "upbeat synthwave with driving bass and bright arpeggios, female vocals, 80s drums",
    "F# minor A minor Bb major 120 90 seconds unknown es ja fr de",
]


def build_tokenizer() -> "tokenizers.Tokenizer":  # noqa: F821
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=420,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    eos = tok.token_to_id("<|endoftext|>")
    # Like the Qwen3-Embedding tokenizer: the post-processor appends <|endoftext|> to every sequence.
    tok.post_processor = processors.TemplateProcessing(
        single="$A <|endoftext|>", pair="$A <|endoftext|> $B <|endoftext|>", special_tokens=[("<|endoftext|>", eos)]
    )
    return tok


def silence_latent(rng: np.random.Generator) -> np.ndarray:
    """[1,64,SILENCE_FRAMES] channel-major, like the reference silence_latent.pt: smooth, small values."""
    t = np.arange(SILENCE_FRAMES, dtype=np.float64)
    freqs = rng.uniform(0.01, 0.2, size=(LATENT_CHANNELS, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(LATENT_CHANNELS, 1))
    offset = rng.normal(0, 0.5, size=(LATENT_CHANNELS, 1))
    latent = offset + 0.3 * np.sin(freqs * t[None, :] + phase)
    return latent[None].astype(np.float32)


SPLIT_MANIFEST = """\
# The tiny test pack: the real ACE-Step 1.5 tensor contract with random low-rank weights.
# Built by tools/tinypack/make_tiny_pack.py; do not edit by hand.

[pack]
name = "tiny"
family = "acestep15"
description = "Tiny random-weight pack with the ACE-Step 1.5 turbo contract (tests only; makes noise, not music)"
tokenizer = "tokenizer.json"
silence_latent = "silence_latent.npy"

[roles.text_encoder]
file = "text_encoder.onnx"
external_data = ["text_encoder.onnx.data"]
precision = "fp32"
inputs = { input_ids = "input_ids" }
outputs = { hidden_states = "hidden_states" }

[roles.token_embeddings]
file = "text_embed_tokens_fp16.onnx"
precision = "fp16"
inputs = { input_ids = "input_ids" }
outputs = { hidden_states = "hidden_states" }
"""

SPLIT_CONDITION = """
[roles.text_projector]
file = "text_projector_fp16.onnx"
precision = "fp16"
inputs = { hidden_states = "text_hidden_states" }
outputs = { projected = "projected_states" }

[roles.lyric_encoder]
file = "lyric_encoder_fp16.onnx"
precision = "fp16"
inputs = { embeddings = "inputs_embeds", attention_mask = "attention_mask" }
outputs = { hidden_states = "last_hidden_state" }

[roles.timbre_encoder]
file = "timbre_encoder_fp16.onnx"
precision = "fp16"
inputs = { reference_latents = "refer_audio", order_mask = "refer_audio_order_mask" }
outputs = { hidden_states = "timbre_embeds" }
"""

COMBINED_CONDITION = """
[roles.condition_encoder]
file = "condition_encoder.onnx"
precision = "fp16"
inputs = { text_hidden_states = "text_hidden_states", text_attention_mask = "text_attention_mask", lyric_embeddings = "lyric_hidden_states", lyric_attention_mask = "lyric_attention_mask", reference_latents = "refer_audio_acoustic_hidden_states_packed", order_mask = "refer_audio_order_mask", source_latents = "src_latents", chunk_masks = "chunk_masks", is_covers = "is_covers" }
outputs = { encoder_hidden_states = "encoder_hidden_states", context_latents = "context_latents" }
"""

DIT_VAE = """
[roles.dit]
file = "dit_decoder.onnx"
external_data = ["dit_decoder.onnx.data"]
precision = "fp32"
inputs = { hidden_states = "hidden_states", timestep = "timestep", timestep_r = "timestep_r", encoder_hidden_states = "encoder_hidden_states", context_latents = "context_latents" }
outputs = { velocity = "velocity" }

[roles.vae_decoder]
file = "vae_decoder_fp16.onnx"
precision = "fp16"
inputs = { latents = "latents" }
outputs = { waveform = "waveform" }
"""


def save(model: onnx.ModelProto, path: pathlib.Path, external: bool = False) -> None:
    if external:
        data = path.name + ".data"
        (path.parent / data).unlink(missing_ok=True)
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data, size_threshold=1024)
    else:
        onnx.save_model(model, str(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, default=PACK_DIR, help="pack folder (default: %(default)s)")
    parser.add_argument("--fixtures", type=pathlib.Path, default=FIXTURES_DIR,
                        help="folder for the broken-graph fixture (default: %(default)s)")
    args = parser.parse_args()

    rng = np.random.default_rng(20261128)
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    args.fixtures.mkdir(parents=True, exist_ok=True)

    tok = build_tokenizer()
    tok.save(str(args.out / "tokenizer.json"))
    wt = Weights(rng, tok.get_vocab_size())

    save(text_encoder(wt, rng), args.out / "text_encoder.onnx", external=True)
    save(token_embeddings(wt, rng), args.out / "text_embed_tokens_fp16.onnx")
    save(text_projector(wt, rng), args.out / "text_projector_fp16.onnx")
    save(lyric_encoder(wt, rng), args.out / "lyric_encoder_fp16.onnx")
    save(timbre_encoder(wt, rng), args.out / "timbre_encoder_fp16.onnx")
    save(condition_encoder(wt, rng), args.out / "condition_encoder.onnx")
    save(dit_decoder(wt, rng), args.out / "dit_decoder.onnx", external=True)
    save(vae_decoder(wt, rng), args.out / "vae_decoder_fp16.onnx")
    np.save(args.out / "silence_latent.npy", silence_latent(rng))
    (args.out / "pack.toml").write_text(SPLIT_MANIFEST + SPLIT_CONDITION + DIT_VAE)
    (args.out / "pack-combined.toml").write_text(
        SPLIT_MANIFEST.replace('name = "tiny"', 'name = "tiny-combined"') + COMBINED_CONDITION + DIT_VAE
    )
    save(lyric_encoder(wt, rng, overflow=True), args.fixtures / "lyric_encoder_overflow.onnx")
    save(vae_decoder(wt, rng, f16_input=True), args.fixtures / "vae_decoder_f16_input.onnx")

    total = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"wrote {args.out} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
