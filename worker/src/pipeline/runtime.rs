//! ONNX Runtime: finding and loading the shared library once per process, creating sessions on the
//! placement a role asks for (CUDA with a logged CPU fallback), and running graphs with timing, dtype
//! conversion and NaN/inf checks.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::{Tensor, TensorElementType, ValueType};

use super::pack::{DType, GraphIo, TensorInfo};
use super::{ExecutionTarget, PipelineError, Placement, Role, StageTiming};

/// The ONNX Runtime release this build is tested with (the `api-31` feature of `ort` needs ≥ 1.31).
pub const ORT_VERSION: &str = "1.31.1";
const LIBRARY_FILE: &str = "libonnxruntime.so.1.31.1";
/// Folders (relative to the repository root) that `scripts/fetch-onnxruntime` fills; the GPU build first.
const RUNTIME_DIRS: [&str; 2] = [".runtime/onnxruntime-gpu", ".runtime/onnxruntime"];
/// The environment variable that names the library explicitly.
pub const ORT_DYLIB_PATH: &str = "ORT_DYLIB_PATH";

/// The loaded ONNX Runtime library.
#[derive(Debug, Clone)]
pub struct OrtLibrary {
    /// Where it was loaded from.
    pub path: PathBuf,
    /// ONNX Runtime's build description.
    pub build_info: String,
}

/// Why ONNX Runtime is not available.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    /// No library was found.
    #[error(
        "ONNX Runtime library not found: {ORT_DYLIB_PATH} is not set and no .runtime/onnxruntime/{LIBRARY_FILE} \
         exists in {searched} or any folder above. Run `scripts/fetch-onnxruntime` in the repository (add --gpu \
         for CUDA), or set {ORT_DYLIB_PATH} to a libonnxruntime.so of version {ORT_VERSION}"
    )]
    NotFound {
        /// The folders whose ancestors were searched (current directory, executable's folder).
        searched: String,
    },
    /// `ORT_DYLIB_PATH` names a file that does not exist.
    #[error(
        "{ORT_DYLIB_PATH} is {path}, which does not exist; fix the path or unset it and run \
         `scripts/fetch-onnxruntime`"
    )]
    EnvPathMissing {
        /// The value of the variable.
        path: PathBuf,
    },
    /// The library exists but could not be loaded or initialised.
    #[error(
        "cannot load ONNX Runtime from {path}: {message}; it must be ONNX Runtime {ORT_VERSION} for this \
         platform (run `scripts/fetch-onnxruntime --force`)"
    )]
    Load {
        /// The library.
        path: PathBuf,
        /// The loader's message.
        message: String,
    },
}

/// Finds the ONNX Runtime library: `ORT_DYLIB_PATH` if set, else `.runtime/onnxruntime-gpu/` or
/// `.runtime/onnxruntime/` in the current directory, the executable's folder, or any folder above either.
pub fn find_onnxruntime() -> Result<PathBuf, RuntimeError> {
    if let Some(path) = std::env::var_os(ORT_DYLIB_PATH).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(RuntimeError::EnvPathMissing { path })
        };
    }
    let starts: Vec<PathBuf> = [
        std::env::current_dir().ok(),
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Path::to_path_buf)),
    ]
    .into_iter()
    .flatten()
    .collect();
    for start in &starts {
        for folder in start.ancestors() {
            for dir in RUNTIME_DIRS {
                let candidate = folder.join(dir).join(LIBRARY_FILE);
                if candidate.is_file() {
                    return Ok(candidate);
                }
            }
        }
    }
    Err(RuntimeError::NotFound {
        searched: starts
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" and "),
    })
}

/// The process-wide ONNX Runtime: the library and its one environment.
struct Runtime {
    /// Where the library came from.
    library: OrtLibrary,
    /// The environment every session is created in (one per process).
    environment: Environment,
}

static RUNTIME: OnceLock<Result<Runtime, RuntimeError>> = OnceLock::new();

fn runtime() -> Result<&'static Runtime, RuntimeError> {
    RUNTIME
        .get_or_init(|| {
            let path = find_onnxruntime()?;
            let load_error = |message: String| RuntimeError::Load {
                path: path.clone(),
                message,
            };
            let environment = ort::init_from(&path)
                .map_err(|e| load_error(e.to_string()))?
                .with_name("radio-worker")
                .with_telemetry(false)
                .build()
                .map_err(|e| load_error(e.to_string()))?;
            let library = OrtLibrary {
                build_info: ort::info().to_string(),
                path,
            };
            tracing::info!(path = %library.path.display(), build = %library.build_info, "ONNX Runtime loaded");
            Ok(Runtime {
                library,
                environment,
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Loads ONNX Runtime once per process (later calls return the same result) and says where it came from.
pub fn init_onnxruntime() -> Result<&'static OrtLibrary, RuntimeError> {
    runtime().map(|r| &r.library)
}

/// Loads the CUDA and cuDNN libraries that `scripts/fetch-onnxruntime --gpu` puts beside ONNX Runtime, once.
/// Without them there (a system-wide CUDA install), the dynamic loader finds them itself.
fn prepare_cuda(library: &Path) -> Result<(), String> {
    static PREPARED: OnceLock<Result<(), String>> = OnceLock::new();
    PREPARED
        .get_or_init(|| {
            let Some(dir) = library.parent() else {
                return Ok(());
            };
            if !dir.join("libcudart.so.13").is_file() {
                return Ok(());
            }
            // cuBLAS and cuFFT need nvJitLink, which is not in ort's list: load it first, so those
            // resolve it by name even if their own search path would not find it.
            let jit_link = dir.join("libnvJitLink.so.13");
            if jit_link.is_file() {
                ort::util::preload_dylib(&jit_link)
                    .map_err(|e| format!("preloading {}: {e}", jit_link.display()))?;
            }
            ort::ep::cuda::preload_dylibs(Some(dir), Some(dir))
                .map_err(|e| format!("preloading the CUDA libraries from {}: {e}", dir.display()))
        })
        .clone()
}

fn log_cuda_fallback(role: Role, reason: &str) {
    static LOGGED: AtomicBool = AtomicBool::new(false);
    if !LOGGED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            %role,
            %reason,
            "CUDA is not usable; running on the CPU instead (logged once; later graphs fall back silently)"
        );
    } else {
        tracing::debug!(%role, %reason, "CUDA not usable; this graph runs on the CPU");
    }
}

/// Does ONNX Runtime's message describe an allocation failure?
pub(crate) fn is_out_of_memory(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "out of memory",
        "cuda_error_out_of_memory",
        "cudaerrormemoryallocation",
        "failed to allocate memory",
        "bad_alloc",
        "cudnn_status_alloc_failed",
        "cublas_status_alloc_failed",
    ]
    .iter()
    .any(|needle| m.contains(needle))
}

/// Why a session could not be created.
#[derive(Debug)]
pub(crate) enum SessionError {
    /// ONNX Runtime is not available at all.
    Runtime(RuntimeError),
    /// The device ran out of memory while loading the graph.
    OutOfMemory {
        /// Where the graph was being loaded.
        target: ExecutionTarget,
        /// ONNX Runtime's message.
        message: String,
    },
    /// The file is not a graph ONNX Runtime can load.
    Load(String),
}

impl SessionError {
    /// The error as a render failure (loading a non-resident graph during a job).
    pub(crate) fn into_pipeline_error(self, role: Role) -> PipelineError {
        match self {
            SessionError::Runtime(e) => PipelineError::Runtime(e),
            SessionError::OutOfMemory { target, message } => PipelineError::OutOfMemory {
                role,
                target,
                action: "loading",
                message,
            },
            SessionError::Load(message) => PipelineError::Onnx {
                role,
                message: format!("loading the graph: {message}"),
            },
        }
    }
}

/// A session and the execution provider it really runs on.
pub(crate) struct LoadedSession {
    /// The session.
    pub(crate) session: Session,
    /// Where it runs: the placement's target, or the CPU after a CUDA fallback.
    pub(crate) target: ExecutionTarget,
}

fn builder(
    intra_threads: Option<usize>,
) -> Result<ort::session::builder::SessionBuilder, SessionError> {
    let rt = runtime().map_err(SessionError::Runtime)?;
    // Idle intra-op threads would spin between runs; on a worker that shares its cores with the LLM
    // and the host-side steps they only take CPU from them.
    let mut builder = Session::builder(&rt.environment)
        .map_err(|e| SessionError::Load(e.to_string()))?
        .with_intra_op_spinning(false)
        .map_err(|e| SessionError::Load(e.to_string()))?;
    if let Some(threads) = intra_threads {
        builder = builder
            .with_intra_threads(threads)
            .map_err(|e| SessionError::Load(e.to_string()))?;
    }
    Ok(builder)
}

/// Creates a session for `path` on `placement`. CUDA is registered with `error_on_failure`, so a failure
/// is known: it is logged (once) and the graph runs on the CPU. An allocation failure while loading on
/// CUDA is reported as out of memory instead, so the worker can retry on a smaller plan.
pub(crate) fn create_session(
    role: Role,
    path: &Path,
    placement: &Placement,
    intra_threads: Option<usize>,
) -> Result<LoadedSession, SessionError> {
    if let ExecutionTarget::Cuda {
        device_id,
        memory_limit_bytes,
    } = placement.target
    {
        let library = &runtime().map_err(SessionError::Runtime)?.library.path;
        match prepare_cuda(library) {
            Err(reason) => log_cuda_fallback(role, &reason),
            Ok(()) => {
                let mut cuda = ort::ep::CUDA::default().with_device_id(device_id as i32);
                if let Some(limit) = memory_limit_bytes {
                    cuda = cuda.with_memory_limit(usize::try_from(limit).unwrap_or(usize::MAX));
                }
                match builder(intra_threads)?
                    .with_execution_providers([cuda.build().error_on_failure()])
                {
                    Err(e) => log_cuda_fallback(role, &e.to_string()),
                    Ok(mut builder) => match builder.commit_from_file(path) {
                        Ok(session) => {
                            return Ok(LoadedSession {
                                session,
                                target: placement.target,
                            });
                        }
                        Err(e) if is_out_of_memory(&e.to_string()) => {
                            return Err(SessionError::OutOfMemory {
                                target: placement.target,
                                message: e.to_string(),
                            });
                        }
                        Err(e) => log_cuda_fallback(role, &e.to_string()),
                    },
                }
            }
        }
    }
    let session = builder(intra_threads)?
        .commit_from_file(path)
        .map_err(|e| {
            let message = e.to_string();
            if is_out_of_memory(&message) {
                SessionError::OutOfMemory {
                    target: ExecutionTarget::Cpu,
                    message,
                }
            } else {
                SessionError::Load(message)
            }
        })?;
    Ok(LoadedSession {
        session,
        target: ExecutionTarget::Cpu,
    })
}

/// Lists a graph's real inputs and outputs, loading it on the CPU without optimisations (cheaper than a
/// session for running it). This is what `radio-worker pack verify --print-io` shows.
pub fn describe_graph(path: &Path) -> Result<GraphIo, String> {
    let session = builder(Some(1))
        .map_err(|e| match e {
            SessionError::Runtime(e) => e.to_string(),
            SessionError::OutOfMemory { message, .. } | SessionError::Load(message) => message,
        })?
        .with_optimization_level(GraphOptimizationLevel::Disable)
        .map_err(|e| e.to_string())?
        .commit_from_file(path)
        .map_err(|e| e.to_string())?;
    Ok(graph_io(&session))
}

/// The inputs and outputs of a loaded session.
pub(crate) fn graph_io(session: &Session) -> GraphIo {
    let info = |outlet: &ort::value::Outlet| match outlet.dtype() {
        ValueType::Tensor {
            ty,
            shape,
            dimension_symbols,
        } => TensorInfo {
            name: outlet.name().to_string(),
            dtype: dtype_of(*ty),
            shape: shape
                .iter()
                .zip(dimension_symbols.iter())
                .map(|(&dim, symbol)| {
                    if dim >= 0 {
                        dim.to_string()
                    } else if symbol.is_empty() {
                        "?".to_string()
                    } else {
                        symbol.clone()
                    }
                })
                .collect(),
        },
        other => TensorInfo {
            name: outlet.name().to_string(),
            dtype: DType::Other(format!("{other:?}")),
            shape: Vec::new(),
        },
    };
    GraphIo {
        inputs: session.inputs().iter().map(info).collect(),
        outputs: session.outputs().iter().map(info).collect(),
    }
}

fn dtype_of(ty: TensorElementType) -> DType {
    match ty {
        TensorElementType::Float32 => DType::F32,
        TensorElementType::Float16 => DType::F16,
        TensorElementType::Int64 => DType::I64,
        TensorElementType::Int32 => DType::I32,
        TensorElementType::Bool => DType::Bool,
        other => DType::Other(format!("{other:?}").to_ascii_lowercase()),
    }
}

/// A value fed to one graph input.
#[derive(Debug)]
pub(crate) enum Feed<'a> {
    /// Float data.
    F32 {
        /// Dimensions.
        shape: Vec<usize>,
        /// Values, row-major.
        data: &'a [f32],
    },
    /// Token ids.
    I64 {
        /// Dimensions.
        shape: Vec<usize>,
        /// Values, row-major.
        data: &'a [i64],
    },
    /// A tensor filled with one value, in whatever dtype the graph declares (masks, flags, dummies).
    Fill {
        /// Dimensions.
        shape: Vec<usize>,
        /// The value (1 for masks, 0 for false).
        value: f64,
    },
}

impl<'a> Feed<'a> {
    /// Float data of `shape`.
    pub(crate) fn f32(shape: impl Into<Vec<usize>>, data: &'a [f32]) -> Self {
        Feed::F32 {
            shape: shape.into(),
            data,
        }
    }

    /// Integer data of `shape`.
    pub(crate) fn i64(shape: impl Into<Vec<usize>>, data: &'a [i64]) -> Self {
        Feed::I64 {
            shape: shape.into(),
            data,
        }
    }

    /// `shape` filled with `value` in the graph's dtype.
    pub(crate) fn fill(shape: impl Into<Vec<usize>>, value: f64) -> Self {
        Feed::Fill {
            shape: shape.into(),
            value,
        }
    }
}

/// One output tensor, converted to f32.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Output {
    /// Dimensions as the graph returned them.
    pub(crate) shape: Vec<usize>,
    /// Values, row-major.
    pub(crate) data: Vec<f32>,
}

fn fill_value(
    dtype: &DType,
    shape: Vec<usize>,
    value: f64,
) -> Result<SessionInputValue<'static>, String> {
    let count = shape.iter().product::<usize>();
    let value: SessionInputValue<'static> = match dtype {
        DType::F32 => Tensor::from_array((shape, vec![value as f32; count]))
            .map_err(|e| e.to_string())?
            .into(),
        DType::I64 => Tensor::from_array((shape, vec![value as i64; count]))
            .map_err(|e| e.to_string())?
            .into(),
        DType::I32 => Tensor::from_array((shape, vec![value as i32; count]))
            .map_err(|e| e.to_string())?
            .into(),
        DType::Bool => Tensor::from_array((shape, vec![value != 0.0; count]))
            .map_err(|e| e.to_string())?
            .into(),
        other => return Err(format!("cannot fill an input of dtype {other}")),
    };
    Ok(value)
}

/// Runs `session` with named inputs, returns the named outputs as f32, and adds the time spent inside
/// ONNX Runtime to `timing`. Any NaN or infinity in an output is an error naming the role.
pub(crate) fn run_session(
    role: Role,
    target: ExecutionTarget,
    session: &mut Session,
    input_types: &BTreeMap<String, DType>,
    inputs: Vec<(&str, Feed<'_>)>,
    outputs: &[&str],
    timing: &mut StageTiming,
) -> Result<Vec<Output>, PipelineError> {
    let onnx = |message: String| PipelineError::Onnx { role, message };
    let mut values: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = Vec::with_capacity(inputs.len());
    for (name, feed) in inputs {
        let value: SessionInputValue<'_> = match feed {
            Feed::F32 { shape, data } => ort::value::TensorRef::from_array_view((shape, data))
                .map_err(|e| onnx(format!("input {name}: {e}")))?
                .into(),
            Feed::I64 { shape, data } => ort::value::TensorRef::from_array_view((shape, data))
                .map_err(|e| onnx(format!("input {name}: {e}")))?
                .into(),
            Feed::Fill { shape, value } => {
                let dtype = input_types.get(name).unwrap_or(&DType::F32);
                fill_value(dtype, shape, value).map_err(|e| onnx(format!("input {name}: {e}")))?
            }
        };
        values.push((Cow::Owned(name.to_string()), value));
    }

    let started = Instant::now();
    let result = session.run(values);
    timing.inside_ort += started.elapsed();
    let session_outputs = result.map_err(|e| {
        let message = e.to_string();
        if is_out_of_memory(&message) {
            PipelineError::OutOfMemory {
                role,
                target,
                action: "running",
                message,
            }
        } else {
            onnx(message)
        }
    })?;

    outputs
        .iter()
        .map(|&name| {
            let value = session_outputs
                .get(name)
                .ok_or_else(|| onnx(format!("the graph returned no output {name:?}")))?;
            let (shape, data) = value
                .try_extract_tensor::<f32>()
                .map_err(|e| onnx(format!("output {name} is not an f32 tensor: {e}")))?;
            let bad = data.iter().filter(|v| !v.is_finite()).count();
            if bad > 0 {
                return Err(PipelineError::NonFinite {
                    role,
                    tensor: name.to_string(),
                    count: bad,
                    total: data.len(),
                });
            }
            Ok(Output {
                shape: shape.iter().map(|&d| d.max(0) as usize).collect(),
                data: data.to_vec(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_allocation_failures_are_recognised() {
        for message in [
            "CUDA failure 2: out of memory ; GPU=0 ; hostname=x ; expr=cudaMalloc((void**)&p, size);",
            "Failed to allocate memory for requested buffer of size 123456789",
            "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : CUBLAS_STATUS_ALLOC_FAILED",
            "std::bad_alloc",
        ] {
            assert!(is_out_of_memory(message), "{message}");
        }
        assert!(!is_out_of_memory(
            "Invalid rank for input: timestep Got: 2 Expected: 1"
        ));
    }
}
