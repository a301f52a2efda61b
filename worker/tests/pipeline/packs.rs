//! Model packs: inventory, and broken packs that must give clear errors (never a panic).

use std::path::Path;

use radio_worker::pipeline::{
    AceStep15, ModelPack, PackError, Pipeline, PipelineError, PipelineOptions, Precision,
    RenderRequest, Role, describe_graph,
};

use crate::common::{TempDir, carry_on, fixture, require_onnxruntime, tiny_pack};

fn load(pack: &Path) -> Result<AceStep15, PipelineError> {
    require_onnxruntime();
    let pack = ModelPack::open(pack)?;
    AceStep15::load(pack, PipelineOptions::default())
}

fn problems(result: Result<AceStep15, PipelineError>) -> (String, Vec<String>) {
    match result {
        Err(PipelineError::Pack(PackError::Invalid { problems, .. })) => {
            let list = problems.iter().map(ToString::to_string).collect::<Vec<_>>();
            (list.join("\n"), list)
        }
        Err(other) => panic!("expected a pack problem list, got: {other}"),
        Ok(_) => panic!("a broken pack loaded"),
    }
}

fn edit_manifest(pack: &Path, edits: &[(&str, &str)]) {
    let path = pack.join("pack.toml");
    let mut text = std::fs::read_to_string(&path).expect("manifest");
    for (from, to) in edits {
        assert!(text.contains(from), "manifest has no {from:?}");
        text = text.replacen(from, to, 1);
    }
    std::fs::write(path, text).expect("write manifest");
}

#[test]
fn inventory_lists_bytes_with_external_data_and_precision() {
    let pack = ModelPack::open(&tiny_pack()).expect("open");
    let inventory = pack.inventory();
    let dit = &inventory.roles[&Role::Dit];
    let data = std::fs::metadata(tiny_pack().join("dit_decoder.onnx.data"))
        .expect("external data")
        .len();
    assert_eq!(dit.external_data_bytes, data);
    assert_eq!(
        dit.bytes(),
        data + std::fs::metadata(&dit.file).expect("graph").len()
    );
    assert_eq!(dit.precision, Precision::Fp32);
    assert_eq!(
        inventory.roles[&Role::VaeDecoder].precision,
        Precision::Fp16
    );
    assert_eq!(inventory.roles.len(), 7);
    assert!(inventory.total_bytes() > 500_000);
}

#[test]
fn graphs_with_external_data_load_from_any_working_directory() {
    // ONNX Runtime resolves `dit_decoder.onnx.data` next to the model, not in the current directory.
    let scratch = TempDir::new("external");
    let pack = scratch.copy_of_tiny_pack();
    let mut pipeline = load(&pack).expect("load");
    pipeline
        .render(&RenderRequest::instrumental("x", 6.0, 1), &mut carry_on)
        .expect("render");
}

#[test]
fn missing_files_are_all_listed() {
    let scratch = TempDir::new("missing");
    let pack = scratch.copy_of_tiny_pack();
    std::fs::remove_file(pack.join("dit_decoder.onnx.data")).expect("remove");
    std::fs::remove_file(pack.join("timbre_encoder_fp16.onnx")).expect("remove");
    std::fs::remove_file(pack.join("tokenizer.json")).expect("remove");
    let err = ModelPack::open(&pack).expect_err("missing files");
    let text = err.to_string();
    assert!(text.contains("3 problem(s)"), "{text}");
    assert!(
        text.contains("dit (")
            && text.contains("dit_decoder.onnx.data")
            && text.contains("missing"),
        "{text}"
    );
    assert!(
        text.contains("timbre_encoder (") && text.contains("graph file is missing"),
        "{text}"
    );
    assert!(
        text.contains("tokenizer.json") && text.contains("tokenizer file is missing"),
        "{text}"
    );
}

#[test]
fn no_manifest_says_what_a_pack_is() {
    let scratch = TempDir::new("empty");
    let err = ModelPack::open(scratch.path()).expect_err("no manifest");
    assert!(matches!(err, PackError::Unreadable { .. }));
    assert!(err.to_string().contains("pack.toml"), "{err}");
}

#[test]
fn a_truncated_graph_is_a_pack_problem() {
    let scratch = TempDir::new("truncated");
    let pack = scratch.copy_of_tiny_pack();
    let vae = pack.join("vae_decoder_fp16.onnx");
    let bytes = std::fs::read(&vae).expect("read");
    std::fs::write(&vae, &bytes[..bytes.len() / 3]).expect("truncate");
    let (text, list) = problems(load(&pack));
    assert_eq!(list.len(), 1, "{text}");
    assert!(
        text.contains("vae_decoder (")
            && text.contains("cannot load this graph")
            && text.contains("download it again"),
        "{text}"
    );
}

#[test]
fn wrong_names_and_unbound_inputs_are_all_reported_at_once() {
    let scratch = TempDir::new("names");
    let pack = scratch.copy_of_tiny_pack();
    edit_manifest(
        &pack,
        &[
            ("timestep = \"timestep\"", "timestep = \"time_step\""),
            ("timestep_r = \"timestep_r\", ", ""),
            (
                "hidden_states = \"last_hidden_state\"",
                "hidden_states = \"lyric_states\"",
            ),
        ],
    );
    let (text, list) = problems(load(&pack));
    assert!(
        list.iter().any(|p| p.contains("dit (")
            && p.contains("tensor \"time_step\"")
            && p.contains("no input of this name")
            && p.contains("timestep_r")),
        "{text}"
    );
    assert!(
        list.iter()
            .any(|p| p.contains("tensor \"timestep\"") && p.contains("is not bound")),
        "{text}"
    );
    assert!(
        list.iter()
            .any(|p| p.contains("tensor \"timestep_r\"") && p.contains("is not bound")),
        "{text}"
    );
    assert!(
        list.iter()
            .any(|p| p.contains("lyric_encoder (") && p.contains("\"lyric_states\"")),
        "{text}"
    );
    assert_eq!(list.len(), 4, "{text}");
}

#[test]
fn a_wrong_dtype_is_reported_with_expected_and_found() {
    let scratch = TempDir::new("dtype");
    let pack = scratch.copy_of_tiny_pack();
    std::fs::copy(
        fixture("vae_decoder_f16_input.onnx"),
        pack.join("vae_decoder_fp16.onnx"),
    )
    .expect("replace the VAE");
    let (text, list) = problems(load(&pack));
    assert_eq!(list.len(), 1, "{text}");
    assert!(
        text.contains("vae_decoder (")
            && text.contains("tensor \"latents\"")
            && text.contains("expected f32 of rank 3")
            && text.contains("found f16 of rank 3"),
        "{text}"
    );
}

#[test]
fn a_graph_that_overflows_to_infinity_is_named() {
    let scratch = TempDir::new("overflow");
    let pack = scratch.copy_of_tiny_pack();
    std::fs::copy(
        fixture("lyric_encoder_overflow.onnx"),
        pack.join("lyric_encoder_fp16.onnx"),
    )
    .expect("replace the lyric encoder");
    // Its inputs and outputs are right: it loads, and fails when it runs.
    let mut pipeline = load(&pack).expect("the contract matches");
    let err = pipeline
        .render(&RenderRequest::instrumental("x", 6.0, 1), &mut carry_on)
        .expect_err("inf");
    assert!(
        matches!(&err, PipelineError::NonFinite { role: Role::LyricEncoder, count, .. } if *count > 0),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("lyric_encoder graph returned"),
        "{err}"
    );
}

#[test]
fn a_manifest_that_binds_both_condition_cuts_or_misses_roles_is_refused() {
    let scratch = TempDir::new("roles");
    let pack = scratch.copy_of_tiny_pack();
    let manifest = pack.join("pack.toml");
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    let without_vae = text
        .split("\n[roles.vae_decoder]")
        .next()
        .expect("split")
        .to_string();
    std::fs::write(&manifest, &without_vae).expect("write");
    let (problem_text, _) = problems(load(&pack));
    assert!(
        problem_text.contains("vae_decoder: role is missing from the manifest"),
        "{problem_text}"
    );

    std::fs::write(&manifest, text.replace("[roles.dit]", "[roles.ditt]")).expect("write");
    let err = ModelPack::open(&pack).expect_err("unknown role");
    assert!(err.to_string().contains("ditt: unknown role"), "{err}");
}

#[test]
fn print_io_lists_real_names_dtypes_and_dynamic_axes() {
    require_onnxruntime();
    let io = describe_graph(&tiny_pack().join("timbre_encoder_fp16.onnx")).expect("describe");
    let inputs: Vec<String> = io.inputs.iter().map(ToString::to_string).collect();
    assert_eq!(
        inputs,
        vec![
            "refer_audio f32 [N, 750, 64]".to_string(),
            "refer_audio_order_mask i64 [N]".to_string()
        ]
    );
    assert_eq!(io.outputs[0].to_string(), "timbre_embeds f32 [1, N, 2048]");
    assert!(describe_graph(&tiny_pack().join("pack.toml")).is_err());
}

#[test]
fn the_shipped_public_manifests_parse_and_only_miss_their_graphs() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packs");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("worker/packs") {
        let manifest = entry.expect("entry").path();
        seen += 1;
        // The weights are not on this machine: every problem must be a missing file, none a bad manifest.
        match ModelPack::open(&manifest) {
            Err(PackError::Invalid { problems, .. }) => {
                assert!(problems.len() >= 7, "{}: {problems:?}", manifest.display());
                for problem in &problems {
                    assert!(
                        problem.message.contains("missing")
                            || problem.message.contains("cannot be read"),
                        "{}: {problem}",
                        manifest.display()
                    );
                }
            }
            other => panic!("{}: {other:?}", manifest.display()),
        }
    }
    assert_eq!(seen, 2, "q4 and fp32 manifests");
}
