//! Helpers shared by the pipeline tests: the tiny pack, scratch folders, comparisons.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use radio_worker::pipeline::{AceStep15, ModelPack, PipelineOptions, Stage, init_onnxruntime};

/// The committed tiny pack (split graphs).
pub fn tiny_pack() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/tiny-pack")
}

/// A committed test fixture.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// These tests run real graphs: without the ONNX Runtime library they fail, saying how to get it.
pub fn require_onnxruntime() {
    if let Err(e) = init_onnxruntime() {
        panic!("these tests need the ONNX Runtime library: {e}");
    }
}

/// Loads a pipeline from a pack folder or manifest with `options`.
pub fn load(pack: &Path, options: PipelineOptions) -> AceStep15 {
    require_onnxruntime();
    let pack = ModelPack::open(pack).unwrap_or_else(|e| panic!("{e}"));
    AceStep15::load(pack, options).unwrap_or_else(|e| panic!("{e}"))
}

/// An observer that never cancels.
pub fn carry_on(_: Stage, _: f32) -> ControlFlow<()> {
    ControlFlow::Continue(())
}

/// The largest absolute difference of two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
}

/// A scratch folder removed when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "radio-worker-{label}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create a scratch folder");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A copy of the tiny pack in this folder, to break.
    pub fn copy_of_tiny_pack(&self) -> PathBuf {
        let dest = self.0.join("pack");
        std::fs::create_dir_all(&dest).expect("pack folder");
        for entry in std::fs::read_dir(tiny_pack()).expect("tiny pack") {
            let path = entry.expect("entry").path();
            let name = path.file_name().expect("file name");
            std::fs::copy(&path, dest.join(name)).expect("copy");
        }
        dest
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
