//! `radio-worker pack …`: checking a model pack before a worker serves it, and listing the real inputs and
//! outputs of every graph so a manifest can be written for an export we have not seen.

use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};

use crate::generate::{Progress, RuntimeArgs};
use crate::pipeline::{
    MANIFEST_FILE, ModelPack, RenderRequest, Role, describe_graph, init_onnxruntime, load_pipeline,
};

/// `radio-worker pack` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum PackCommand {
    /// Check a pack: every file exists, every graph matches the manifest (all problems at once), and a
    /// short smoke render works.
    Verify(VerifyArgs),
}

/// `radio-worker pack verify`.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// The pack: a folder with a pack.toml, or a manifest file.
    #[arg(value_name = "DIR")]
    pub pack: PathBuf,
    /// First list every graph's real inputs and outputs (names, dtypes, shapes), including graphs the
    /// manifest does not name yet.
    #[arg(long)]
    pub print_io: bool,
    /// Only check the graphs; skip the smoke render.
    #[arg(long)]
    pub no_smoke: bool,
    /// How the pipeline runs.
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// Runs a `radio-worker pack` subcommand.
pub fn run(command: PackCommand) -> anyhow::Result<()> {
    match command {
        PackCommand::Verify(args) => verify(&args),
    }
}

fn verify(args: &VerifyArgs) -> anyhow::Result<()> {
    let library = init_onnxruntime()?;
    println!("ONNX Runtime: {}", library.path.display());
    if args.print_io {
        print_io(&args.pack)?;
    }

    let pack = ModelPack::open(&args.pack)?;
    println!(
        "pack {:?} ({}, family {}), manifest {}",
        pack.name(),
        pack.description().unwrap_or("no description"),
        pack.family(),
        pack.manifest_path().display()
    );
    let inventory = pack.inventory().clone();
    for (role, entry) in &inventory.roles {
        println!(
            "  {:<18} {:>6}  {:>10}  {}",
            role.as_str(),
            entry.precision.as_str(),
            human_bytes(entry.bytes()),
            entry.file.display()
        );
    }
    println!(
        "  {:<18} {:>6}  {:>10}",
        "total",
        "",
        human_bytes(inventory.total_bytes())
    );

    let mut pipeline = load_pipeline(pack, args.runtime.options())?;
    println!("every graph matches the manifest");
    if args.no_smoke {
        return Ok(());
    }

    let request = RenderRequest::instrumental("pack verify smoke test, soft piano", 5.12, 0);
    let progress = Progress::new();
    let rendered = pipeline.render(&request, &mut |stage, fraction| {
        progress.observe(stage, fraction)
    });
    progress.finish();
    let rendered = rendered.context("the smoke render failed")?;
    let peak = rendered.samples.iter().fold(0.0f32, |m, s| m.max(s.abs()));
    ensure!(
        peak > 0.0,
        "the smoke render is pure silence: the VAE decoder (or the DiT) returns zeros"
    );
    let t = rendered.timings;
    println!(
        "smoke render: {:.2} s of audio in {:.2} s (text {:.2} s, diffusion {:.2} s, vae {:.2} s; {:.2} s inside \
         ONNX Runtime)",
        rendered.duration_s(),
        t.total().wall.as_secs_f64(),
        t.text_encode.wall.as_secs_f64(),
        t.diffusion.wall.as_secs_f64(),
        t.vae_decode.wall.as_secs_f64(),
        t.total().inside_ort.as_secs_f64(),
    );
    println!("pack OK");
    Ok(())
}

/// Lists the inputs and outputs of every `.onnx` file under the pack folder, marking the role the
/// manifest gives it (if any).
fn print_io(path: &Path) -> anyhow::Result<()> {
    let root = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    };
    let manifest = if path.is_dir() {
        path.join(MANIFEST_FILE)
    } else {
        path.to_path_buf()
    };
    let roles: Vec<(Role, PathBuf)> = ModelPack::open(&manifest)
        .map(|pack| {
            pack.roles()
                .filter_map(|role| pack.role_file(role).map(|f| (role, f.to_path_buf())))
                .collect()
        })
        .unwrap_or_default();
    let mut graphs = Vec::new();
    find_graphs(&root, 4, &mut graphs)
        .with_context(|| format!("cannot list {}", root.display()))?;
    graphs.sort();
    ensure!(
        !graphs.is_empty(),
        "no .onnx files under {}",
        root.display()
    );
    for graph in graphs {
        let role = roles
            .iter()
            .find(|(_, file)| same_file(file, &graph))
            .map_or_else(
                || "not in the manifest".to_string(),
                |(r, _)| format!("role {r}"),
            );
        println!("{} ({role})", graph.display());
        match describe_graph(&graph) {
            Ok(io) => {
                for input in &io.inputs {
                    println!("  input  {input}");
                }
                for output in &io.outputs {
                    println!("  output {output}");
                }
            }
            Err(e) => println!("  cannot load: {e}"),
        }
    }
    println!();
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn find_graphs(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() && depth > 0 {
            find_graphs(&path, depth - 1, found)?;
        } else if path.extension().is_some_and(|e| e == "onnx") {
            found.push(path);
        }
    }
    Ok(())
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}
