//! `radio-worker generate` and `radio-worker pack verify`, run as a user runs them: the real binary on
//! the tiny pack, judged by its exit code, its messages and the files it writes.

use std::path::Path;
use std::process::{Command, Output};

use crate::audio::{decode_ogg_opus, decoded_frames};
use crate::common::{TempDir, require_onnxruntime, tiny_pack};

fn radio_worker(args: &[&str]) -> Output {
    require_onnxruntime();
    Command::new(env!("CARGO_BIN_EXE_radio-worker"))
        .args(args)
        .env_remove("MODELS_DIR")
        .env_remove("RUST_LOG")
        .output()
        .expect("run radio-worker")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `generate` on the tiny pack with every song flag, writing `out`.
fn generate(out: &Path, lyrics_file: &Path) -> Output {
    let pack = tiny_pack();
    radio_worker(&[
        "generate",
        "--models",
        &pack.to_string_lossy(),
        "--caption",
        "bright synth pop, driving bass",
        "--lyrics-file",
        &lyrics_file.to_string_lossy(),
        "--bpm",
        "118",
        "--key",
        "c major",
        "--language",
        "en",
        "--duration",
        "6",
        "--seed",
        "7",
        "--shift",
        "2",
        "--out",
        &out.to_string_lossy(),
        "--json",
    ])
}

#[test]
fn generate_writes_the_format_its_out_extension_names() {
    let dir = TempDir::new("cli-generate");
    let lyrics = dir.path().join("lyrics.txt");
    std::fs::write(
        &lyrics,
        "[verse]\nneon on the water\n[chorus]\nwe run all night\n",
    )
    .expect("lyrics");
    for extension in ["ogg", "wav", "flac"] {
        let out = dir.path().join(format!("song.{extension}"));
        let run = generate(&out, &lyrics);
        assert!(run.status.success(), "{extension}: {}", text(&run.stderr));
        let summary: serde_json::Value = serde_json::from_slice(&run.stdout)
            .unwrap_or_else(|e| panic!("--json: {e}: {}", text(&run.stdout)));
        assert_eq!(summary["seed"], 7, "{summary}");
        let bytes = std::fs::read(&out).expect("the output file");
        let seconds = if extension == "ogg" {
            decode_ogg_opus(bytes).samples.len() as f64 / 2.0 / 48_000.0
        } else {
            let (rate, channels, frames) = decoded_frames(bytes, extension);
            assert_eq!((rate, channels), (48_000, 2), "{extension}");
            frames as f64 / 48_000.0
        };
        assert!((seconds - 6.0).abs() <= 0.020, "{extension}: {seconds} s");
    }
}

#[test]
fn generate_refuses_bad_flags_naming_the_flag_and_writes_nothing() {
    let dir = TempDir::new("cli-refuse");
    let pack = tiny_pack();
    let pack = pack.to_string_lossy();
    let out = dir.path().join("x.mp3");
    let mp3 = out.to_string_lossy().into_owned();
    let missing = dir.path().join("no-such-lyrics.txt");
    let missing = missing.to_string_lossy().into_owned();
    let wav = dir.path().join("a.wav");
    let wav_path = wav.to_string_lossy().into_owned();
    let cases: [(Vec<&str>, &str); 4] = [
        (
            vec!["--caption", "x", "--out", &mp3],
            ".ogg, .opus, .wav or .flac",
        ),
        (
            vec!["--caption", "x", "--key", "H major", "--out", &wav_path],
            "--key",
        ),
        (
            vec![
                "--caption",
                "x",
                "--lyrics-file",
                &missing,
                "--out",
                &wav_path,
            ],
            "--lyrics-file",
        ),
        (
            vec!["--caption", "x", "--duration", "9000", "--out", &wav_path],
            "--duration",
        ),
    ];
    for (flags, expected) in cases {
        let mut args = vec!["generate", "--models", &pack];
        args.extend(flags.iter().copied());
        let run = radio_worker(&args);
        assert_eq!(run.status.code(), Some(1), "{args:?}");
        let stderr = text(&run.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    assert!(!out.exists() && !wav.exists(), "nothing was written");
}

#[test]
fn pack_verify_passes_the_tiny_pack_and_names_the_file_a_broken_copy_lacks() {
    let run = radio_worker(&["pack", "verify", &tiny_pack().to_string_lossy()]);
    let stdout = text(&run.stdout);
    assert!(run.status.success(), "{stdout}{}", text(&run.stderr));
    assert!(
        stdout.contains("every graph matches the manifest"),
        "{stdout}"
    );
    assert!(stdout.contains("pack OK"), "{stdout}");

    let dir = TempDir::new("cli-verify");
    let broken = dir.copy_of_tiny_pack();
    std::fs::remove_file(broken.join("vae_decoder_fp16.onnx")).expect("remove a graph");
    let run = radio_worker(&["pack", "verify", &broken.to_string_lossy()]);
    let stderr = text(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("vae_decoder_fp16.onnx"), "{stderr}");
    assert!(!text(&run.stdout).contains("pack OK"));
}
