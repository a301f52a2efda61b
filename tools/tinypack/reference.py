#!/usr/bin/env python3
"""NumPy reference of the host-side ACE-Step 1.5 turbo steps (ACESTEP.md section 2, steps 1-13).

Runs the tiny pack with onnxruntime's Python package for fixed inputs and writes what the Rust pipeline
must reproduce, so the Rust parity test needs no Python:

  worker/tests/fixtures/parity/inputs.json     the request (hand-written, read here)
  worker/tests/fixtures/parity/noise.npy       the initial noise [1,F,64], written by the Rust side:
        cargo run --example acestep-noise -- --seed SEED --frames F --out worker/tests/fixtures/parity/noise.npy
  worker/tests/fixtures/parity/expected.json   token ids, frames, sigmas (written here)
  worker/tests/fixtures/parity/condition_head64.npy  the packed condition [1,S,2048], first 64 of the 2048
        columns of every row (the whole tensor is 1.3 MB; every upstream value reaches these columns through
        the low-rank projections, and the full tensor reaches the latents through the DiT) (written here)
  worker/tests/fixtures/parity/latents.npy     x0 after the 8 steps, [1,F,64] (written here)
  worker/tests/fixtures/parity/waveform.npy    interleaved stereo, normalised to -1 dBFS (written here)

The noise comes from the Rust generator (ChaCha20 + rand_distr's standard normal): seeds are reproducible
within this project, and only one implementation of that generator exists. The Rust parity test checks that
its generator still yields noise.npy bit for bit.

Usage: python3 tools/tinypack/reference.py [--pack DIR] [--fixtures DIR]
Needs numpy, tokenizers and onnxruntime==1.31.1.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import tomllib

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

REPO = pathlib.Path(__file__).resolve().parents[2]
SAMPLES_PER_FRAME = 1920
SAMPLE_RATE = 48000
MIN_FRAMES = 128
TIMBRE_FRAMES = 750
VAE_OVERLAP = 64
CAPTION_MAX_TOKENS = 256
LYRIC_MAX_TOKENS = 2048
PEAK_DBFS = -1.0


# Steps 1-2: prompts.
def caption_prompt(caption: str, bpm, timesignature, keyscale, duration_s: float) -> str:
    na = "N/A"
    return (
        "# Instruction\n"
        "Fill the audio semantic mask based on the given conditions:\n"
        "\n"
        "# Caption\n"
        f"{caption}\n"
        "\n"
        "# Metas\n"
        f"- bpm: {bpm if bpm is not None else na}\n"
        f"- timesignature: {timesignature if timesignature is not None else na}\n"
        f"- keyscale: {keyscale if keyscale is not None else na}\n"
        f"- duration: {int(duration_s)} seconds\n"
        "<|endoftext|>\n"
    )


def lyric_prompt(language: str, lyrics: str) -> str:
    return f"# Languages\n{language}\n\n# Lyric\n{lyrics}<|endoftext|>"


def tokenize(tokenizer: Tokenizer, text: str, max_tokens: int) -> np.ndarray:
    tokenizer.enable_truncation(max_tokens)
    ids = tokenizer.encode(text, add_special_tokens=True).ids
    tokenizer.no_truncation()
    return np.array([ids], dtype=np.int64)


# Step 7: length.
def latent_frames(duration_s: float) -> int:
    return max(MIN_FRAMES, math.floor(round(duration_s, 1) * SAMPLE_RATE / SAMPLES_PER_FRAME))


# Step 9: schedule.
def sigmas(shift: int) -> np.ndarray:
    tau = np.linspace(1.0, 0.0, 9)[:-1]
    return shift * tau / (1.0 + (shift - 1.0) * tau)  # float64


# Step 11: DCW on [F,64] (time-major), Haar along time per channel.
def haar(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if x.shape[0] % 2:
        x = np.concatenate([x, np.zeros((1, x.shape[1]), dtype=x.dtype)])
    a, b = x[0::2], x[1::2]
    s = np.float32(1.0 / math.sqrt(2.0))
    return (a + b) * s, (a - b) * s


def inverse_haar(low: np.ndarray, high: np.ndarray, frames: int) -> np.ndarray:
    s = np.float32(1.0 / math.sqrt(2.0))
    out = np.empty((low.shape[0] * 2, low.shape[1]), dtype=low.dtype)
    out[0::2] = (low + high) * s
    out[1::2] = (low - high) * s
    return out[:frames]


def dcw(x_next: np.ndarray, x0_hat: np.ndarray, sigma: float) -> np.ndarray:
    frames = x_next.shape[0]
    low, high = haar(x_next)
    low0, high0 = haar(x0_hat)
    low = low + np.float32(0.05 * sigma) * (low - low0)
    high = high + np.float32(0.02 * (1.0 - sigma)) * (high - high0)
    return inverse_haar(low, high, frames)


class Pack:
    def __init__(self, manifest: pathlib.Path):
        self.root = manifest.parent
        self.manifest = tomllib.loads(manifest.read_text())
        self.sessions: dict[str, ort.InferenceSession] = {}
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.log_severity_level = 4  # the odd-F check below fails on purpose; keep ORT quiet about it
        for role, spec in self.manifest["roles"].items():
            self.sessions[role] = ort.InferenceSession(
                str(self.root / spec["file"]), options, providers=["CPUExecutionProvider"]
            )
        pack = self.manifest["pack"]
        self.tokenizer = Tokenizer.from_file(str(self.root / pack["tokenizer"]))
        self.silence = np.load(self.root / pack["silence_latent"])[0].T.copy()  # [frames,64] time-major

    def run(self, role: str, **inputs) -> dict[str, np.ndarray]:
        spec = self.manifest["roles"][role]
        feed = {spec["inputs"][slot]: value for slot, value in inputs.items() if slot in spec["inputs"]}
        names = list(spec["outputs"].values())
        out = self.sessions[role].run(names, feed)
        result = dict(zip(spec["outputs"].keys(), out))
        for slot, value in result.items():
            if not np.all(np.isfinite(value)):
                sys.exit(f"{role}: output {slot} is not finite")
        return result


def render(pack: Pack, req: dict, noise: np.ndarray) -> dict:
    lyrics = req.get("lyrics") or "[Instrumental]"
    caption_ids = tokenize(
        pack.tokenizer,
        caption_prompt(req["caption"], req.get("bpm"), req.get("timesignature"), req.get("keyscale"),
                       req["duration_s"]),
        CAPTION_MAX_TOKENS,
    )
    lyric_ids = tokenize(pack.tokenizer, lyric_prompt(req.get("language") or "unknown", lyrics), LYRIC_MAX_TOKENS)

    # Steps 3-6: encoders and packing.
    text = pack.run("text_encoder", input_ids=caption_ids)["hidden_states"]
    text = pack.run("text_projector", hidden_states=text)["projected"]
    embeds = pack.run("token_embeddings", input_ids=lyric_ids)["hidden_states"]
    lyric = pack.run("lyric_encoder", embeddings=embeds,
                     attention_mask=np.ones(lyric_ids.shape, dtype=np.int64))["hidden_states"]
    timbre = pack.run("timbre_encoder", reference_latents=pack.silence[None, :TIMBRE_FRAMES],
                      order_mask=np.zeros(1, dtype=np.int64))["hidden_states"]
    condition = np.concatenate([lyric, timbre, text], axis=1)

    # Step 7: frames and context.
    frames = latent_frames(req["duration_s"])
    context = np.concatenate([pack.silence[:frames], np.ones((frames, 64), dtype=np.float32)], axis=1)[None]
    assert noise.shape == (1, frames, 64), f"noise.npy has shape {noise.shape}, expected (1, {frames}, 64)"

    # Steps 8-11: the eight turbo steps. The DiT patchifies pairs of frames, so an odd F must be padded:
    # check that the tiny DiT refuses it like the real one, so the parity run proves the padding.
    if frames % 2:
        try:
            pack.run("dit", hidden_states=noise, timestep=np.ones(1, np.float32), timestep_r=np.ones(1, np.float32),
                     encoder_hidden_states=condition, context_latents=context)
            sys.exit("the tiny DiT accepted an odd F; it must refuse it like the real one")
        except ort.capi.onnxruntime_pybind11_state.Fail as refused:
            print(f"the tiny DiT refuses odd F as it should: {str(refused).splitlines()[0][:90]}...")
    sig = sigmas(req["shift"])
    x = noise[0].copy()
    padded = frames + frames % 2
    for i in range(8):
        x_in = np.zeros((1, padded, 64), dtype=np.float32)
        x_in[0, :frames] = x
        ctx_in = np.zeros((1, padded, 128), dtype=np.float32)
        ctx_in[0, :frames] = context[0]
        t = np.array([sig[i]], dtype=np.float32)
        v = pack.run("dit", hidden_states=x_in, timestep=t, timestep_r=t, encoder_hidden_states=condition,
                     context_latents=ctx_in)["velocity"][0, :frames]
        if i == 7:
            x = x - np.float32(sig[i]) * v
        else:
            x_next = x - np.float32(sig[i] - sig[i + 1]) * v
            if req["dcw"]:
                x0_hat = x - np.float32(sig[i]) * v
                x_next = dcw(x_next, x0_hat, sig[i])
            x = x_next
    latents = x[None]

    # Step 12: tiled VAE decode.
    channel_major = np.ascontiguousarray(latents[0].T)[None]  # [1,64,F]
    tile = req["vae_tile_frames"]
    pieces = []
    for start in range(0, frames, tile):
        end = min(start + tile, frames)
        w_start, w_end = max(0, start - VAE_OVERLAP), min(frames, end + VAE_OVERLAP)
        wave = pack.run("vae_decoder", latents=channel_major[:, :, w_start:w_end])["waveform"][0]
        pieces.append(wave[:, (start - w_start) * SAMPLES_PER_FRAME:(end - w_start) * SAMPLES_PER_FRAME])
    planar = np.concatenate(pieces, axis=1)
    untiled = pack.run("vae_decoder", latents=channel_major)["waveform"][0]
    print(f"tiled vs untiled VAE decode: max abs difference {np.abs(planar - untiled).max():.3g}")

    # Step 13: interleave and peak-normalise to -1 dBFS.
    interleaved = planar.T.reshape(-1)
    peak = np.abs(interleaved).max()
    gain = np.float32(10.0 ** (PEAK_DBFS / 20.0) / peak)
    waveform = interleaved * gain

    return {
        "caption_ids": caption_ids[0].tolist(),
        "lyric_ids": lyric_ids[0].tolist(),
        "frames": frames,
        "sigmas": sig.tolist(),
        "condition": condition,
        "latents": latents.astype(np.float32),
        "waveform": waveform.astype(np.float32),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pack", type=pathlib.Path, default=REPO / "worker/assets/tiny-pack/pack.toml")
    parser.add_argument("--fixtures", type=pathlib.Path, default=REPO / "worker/tests/fixtures/parity")
    args = parser.parse_args()

    req = json.loads((args.fixtures / "inputs.json").read_text())
    frames = latent_frames(req["duration_s"])
    noise_path = args.fixtures / "noise.npy"
    if not noise_path.exists():
        sys.exit(
            f"{noise_path} is missing; write it with the Rust generator first:\n"
            f"  cargo run --example acestep-noise -- --seed {req['seed']} --frames {frames} --out {noise_path}"
        )
    noise = np.load(noise_path)

    out = render(Pack(args.pack), req, noise)
    np.save(args.fixtures / "condition_head64.npy", np.ascontiguousarray(out["condition"][:, :, :64]))
    np.save(args.fixtures / "latents.npy", out["latents"])
    np.save(args.fixtures / "waveform.npy", out["waveform"])
    expected = {k: out[k] for k in ("caption_ids", "lyric_ids", "frames", "sigmas")}
    (args.fixtures / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    print(f"wrote {args.fixtures}: F={frames}, S={out['condition'].shape[1]}, "
          f"{out['waveform'].size // 2} samples per channel")


if __name__ == "__main__":
    main()
