//! The LLM song writer: llama.cpp (through `llama-cpp-2`) with a GGUF model and a grammar.
//!
//! The model is loaded once and kept, or loaded per song and released after it, as the memory plan says.
//! A fresh context (KV cache) is made for each song and dropped with it. Sampling is seeded from the
//! job's seed, so a seed reproduces its description on the same model, build and hardware.
//!
//! Sampling follows llama.cpp's own fast path: the free sampler chain picks a token, the grammar only
//! checks that one token, and only when it is refused is the whole vocabulary filtered by the grammar
//! and the choice made again. Filtering all tokens every step is slow for large vocabularies (Gemma's has
//! 262k tokens).

use std::fs::File;
use std::io::Read;
use std::num::NonZeroU32;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;

use super::config::{LlmPlacement, SongWriterConfig};
use super::{SongBrief, prompt};

/// Answers shorter than this many tokens cannot hold a song; a prompt that leaves less room is refused.
const MIN_ANSWER_TOKENS: u32 = 32;
/// Prompt tokens decoded per batch.
const BATCH_TOKENS: u32 = 512;

/// The process's llama.cpp backend, started on first use. llama.cpp's backend may be started only once per
/// process (a second `LlamaBackend::init` fails), so every user in the worker goes through this. It also
/// routes llama.cpp's log lines into `tracing` instead of stderr (target `llama-cpp-2`; the model-load
/// report is at info level, `RUST_LOG=info,llama-cpp-2=warn` quiets it).
pub fn llama_backend() -> Result<&'static LlamaBackend, LoadError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| LoadError::Backend(e.clone()))
}

/// Why a model could not be loaded. Each message names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// `LLM_REQUIRED` is set but no model is.
    #[error(
        "LLM_REQUIRED is true but no LLM model is configured: set LLM_MODEL_PATH to a .gguf file, or set LLM_REQUIRED=false to use the template song writer"
    )]
    NotConfigured,
    /// The file does not exist.
    #[error(
        "LLM model {path} does not exist: set LLM_MODEL_PATH to a downloaded .gguf file (e.g. a 4-bit Gemma 3n E4B), or unset it to use the template song writer"
    )]
    Missing {
        /// The configured path.
        path: PathBuf,
    },
    /// The path is a directory (or another non-file).
    #[error(
        "LLM model {path} is not a file: point LLM_MODEL_PATH at the .gguf file itself (for split models, the first part)"
    )]
    NotAFile {
        /// The configured path.
        path: PathBuf,
    },
    /// The file exists but cannot be read.
    #[error("cannot read LLM model {path}: {source}; check the path and its permissions")]
    Unreadable {
        /// The configured path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file does not start with the GGUF magic bytes.
    #[error(
        "LLM model {path} is not a GGUF file (it starts with {found}, not \"GGUF\"): llama.cpp needs a .gguf model; download a GGUF build of the model or convert it with llama.cpp's convert_hf_to_gguf.py"
    )]
    NotGguf {
        /// The configured path.
        path: PathBuf,
        /// The first bytes found, escaped.
        found: String,
    },
    /// llama.cpp refused the file.
    #[error(
        "llama.cpp could not load LLM model {path}: the file is truncated or corrupt, or its architecture is unknown to this build's llama.cpp; re-download it (compare its checksum) or choose another GGUF (llama.cpp's log lines above say more)"
    )]
    Corrupt {
        /// The configured path.
        path: PathBuf,
    },
    /// The llama.cpp backend failed to start.
    #[error("the llama.cpp backend could not start: {0}")]
    Backend(String),
    /// `llama-cpp-2` panicked while loading (a bug there, caught here).
    #[error("loading LLM model {path} failed inside llama-cpp-2: {message}")]
    Panicked {
        /// The configured path.
        path: PathBuf,
        /// The panic message.
        message: String,
    },
}

/// Why a generation failed. Apart from [`GenerateError::Cancelled`], the caller falls back to templates.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// The cancellation check returned true.
    #[error("cancelled")]
    Cancelled,
    /// The model had been released and could not be loaded again.
    #[error("{0}")]
    Load(#[from] LoadError),
    /// The prompt leaves no room for an answer.
    #[error(
        "the prompt has {prompt_tokens} tokens and the context holds {context_tokens}: raise LLM_CONTEXT_SIZE (the model allows up to {train_tokens})"
    )]
    PromptTooLong {
        /// Tokens in the prompt.
        prompt_tokens: u32,
        /// The context size used.
        context_tokens: u32,
        /// The model's training context.
        train_tokens: u32,
    },
    /// llama.cpp could not make a context.
    #[error(
        "llama.cpp could not create a context of {tokens} tokens (out of memory?): lower LLM_CONTEXT_SIZE or LLM_GPU_LAYERS"
    )]
    Context {
        /// The context size asked for.
        tokens: u32,
    },
    /// The JSON schema or its grammar was refused.
    #[error("the answer grammar could not be built: {0}")]
    Grammar(String),
    /// llama.cpp failed to evaluate tokens.
    #[error("llama.cpp failed while generating: {0}")]
    Decode(String),
    /// `llama-cpp-2` panicked while generating (a bug there, caught here; the model is reloaded next time).
    #[error("generation failed inside llama-cpp-2: {0}")]
    Panicked(String),
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The model finished its answer (the grammar was complete and it ended its turn).
    Finished,
    /// The answer reached `LLM_MAX_TOKENS` (or the room left in the context).
    TokenLimit,
    /// `LLM_TIMEOUT_SECS` passed.
    Timeout,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StopReason::Finished => "finished",
            StopReason::TokenLimit => "hit the token limit (LLM_MAX_TOKENS)",
            StopReason::Timeout => "timed out (LLM_TIMEOUT_SECS)",
        })
    }
}

/// How the prompt was put in chat form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptFormat {
    /// The model's own chat template (from the GGUF), applied by llama.cpp.
    ModelTemplate,
    /// The model has no chat template, or llama.cpp does not know it: a plain system/request/answer text.
    Fallback,
}

/// One answer from the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The answer's bytes as generated. Usually UTF-8 JSON, but a limit can cut a character in half:
    /// treat as outside data ([`super::repair_llm_output`]).
    pub raw: Vec<u8>,
    /// Why generation ended.
    pub stop: StopReason,
    /// How the prompt was formatted.
    pub prompt_format: PromptFormat,
    /// Tokens in the prompt.
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub generated_tokens: u32,
    /// Time spent loading the model for this answer (zero when it was resident).
    pub load_time: Duration,
    /// Time spent reading the prompt.
    pub prompt_time: Duration,
    /// Time spent generating.
    pub generation_time: Duration,
}

/// What a GGUF file holds, as far as the worker cares (for the memory plan and the logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// The file.
    pub path: PathBuf,
    /// Its size in bytes (about the memory its weights need).
    pub file_size: u64,
    /// `general.architecture`, e.g. `gemma3n`, `llama`.
    pub architecture: String,
    /// Transformer layers (what `LLM_GPU_LAYERS` counts).
    pub n_layers: u32,
    /// The context length the model was trained with.
    pub n_ctx_train: u32,
    /// Whether the file carries a chat template.
    pub has_chat_template: bool,
}

/// Checks that `path` is a readable file starting with `GGUF`; returns its size.
fn check_file(path: &Path) -> Result<u64, LoadError> {
    let meta = std::fs::metadata(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => LoadError::Missing {
            path: path.to_path_buf(),
        },
        _ => LoadError::Unreadable {
            path: path.to_path_buf(),
            source,
        },
    })?;
    if !meta.is_file() {
        return Err(LoadError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let mut magic = Vec::with_capacity(4);
    File::open(path)
        .and_then(|f| f.take(4).read_to_end(&mut magic))
        .map_err(|source| LoadError::Unreadable {
            path: path.to_path_buf(),
            source,
        })?;
    if magic != b"GGUF" {
        let found = if magic.is_empty() {
            "nothing (the file is empty)".to_string()
        } else {
            format!("{:?}", String::from_utf8_lossy(&magic))
        };
        return Err(LoadError::NotGguf {
            path: path.to_path_buf(),
            found,
        });
    }
    Ok(meta.len())
}

/// Loads a model, turning a null result or a panic in the binding into a [`LoadError`].
fn load_model(
    backend: &LlamaBackend,
    path: &Path,
    params: &LlamaModelParams,
) -> Result<LlamaModel, LoadError> {
    // `load_from_file` debug-asserts that the path exists; `check_file` ran first, but the file could
    // vanish in between, and a panic must not take the worker down.
    match catch_unwind(AssertUnwindSafe(|| {
        LlamaModel::load_from_file(backend, path, params)
    })) {
        Ok(Ok(model)) => Ok(model),
        Ok(Err(e)) => {
            tracing::debug!(model = %path.display(), error = %e, "llama.cpp refused the model");
            Err(LoadError::Corrupt {
                path: path.to_path_buf(),
            })
        }
        Err(panic) => Err(LoadError::Panicked {
            path: path.to_path_buf(),
            message: panic_message(panic.as_ref()),
        }),
    }
}

fn model_info(model: &LlamaModel, path: &Path, file_size: u64) -> ModelInfo {
    let architecture = model
        .meta_val_str("general.architecture")
        .unwrap_or_else(|_| "unknown".into());
    // A vocabulary-only load leaves the hyperparameters at zero; the GGUF metadata has them.
    let meta = |key: &str| {
        model
            .meta_val_str(&format!("{architecture}.{key}"))
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
            .unwrap_or(0)
    };
    let n_layers = match model.n_layer() {
        0 => meta("block_count"),
        n => n,
    };
    let n_ctx_train = match model.n_ctx_train() {
        0 => meta("context_length"),
        n => n,
    };
    ModelInfo {
        path: path.to_path_buf(),
        file_size,
        architecture,
        n_layers,
        n_ctx_train,
        has_chat_template: model.chat_template(None).is_ok(),
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Writes song descriptions with a GGUF model. `Send`, not `Sync`: one song at a time, on a blocking thread.
#[derive(Debug)]
pub struct LlamaSongWriter {
    /// The file and what it holds; the path is where reloads read from.
    info: ModelInfo,
    /// Layers offloaded to the GPU when the model is loaded for songs.
    gpu_layers: u32,
    /// Keep the model between songs (else it is released after each one).
    keep_resident: bool,
    /// Most tokens of context per song: `LLM_CONTEXT_SIZE` clamped to the model's training context.
    context_size: u32,
    /// Most tokens per answer (`LLM_MAX_TOKENS`).
    max_tokens: u32,
    /// Wall-time limit per answer, prompt included (`LLM_TIMEOUT_SECS`).
    timeout: Duration,
    /// The loaded model; `None` while released.
    model: Option<LlamaModel>,
}

impl LlamaSongWriter {
    /// Loads (and so checks) the model from `config.model_path`, on `placement.gpu_layers` GPU layers unless
    /// `LLM_GPU_LAYERS` overrides it. When the plan does not keep the model resident, it is checked on the
    /// CPU (memory-mapped, no GPU memory) and released; each song then loads it again.
    ///
    /// Errors name the file and what to do: missing, not a file, unreadable, not GGUF, or refused by
    /// llama.cpp (truncated, corrupt, unknown architecture). Never panics on a bad file.
    pub fn load(config: &SongWriterConfig, placement: LlmPlacement) -> Result<Self, LoadError> {
        let path = config.model_path.clone().ok_or(LoadError::NotConfigured)?;
        let file_size = check_file(&path)?;
        let backend = llama_backend()?;
        let gpu_layers = config.effective_gpu_layers(placement);
        let started = Instant::now();
        let load_layers = if placement.keep_resident {
            gpu_layers
        } else {
            0
        };
        let model = load_model(backend, &path, &model_params(load_layers))?;
        let info = model_info(&model, &path, file_size);
        let context_size = config.context_size.min(info.n_ctx_train.max(256));
        if context_size < config.context_size {
            tracing::info!(
                requested = config.context_size,
                used = context_size,
                "LLM_CONTEXT_SIZE is larger than the model's training context; using the model's"
            );
        }
        tracing::info!(
            model = %path.display(),
            architecture = %info.architecture,
            layers = info.n_layers,
            gpu_layers,
            gpu_offload_supported = backend.supports_gpu_offload(),
            context_size,
            chat_template = info.has_chat_template,
            keep_resident = placement.keep_resident,
            load_seconds = started.elapsed().as_secs_f64(),
            "LLM song writer loaded"
        );
        Ok(Self {
            info,
            gpu_layers,
            keep_resident: placement.keep_resident,
            context_size,
            max_tokens: config.max_tokens,
            timeout: config.timeout,
            model: placement.keep_resident.then_some(model),
        })
    }

    /// What the model file holds.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Whether the model is in memory now.
    pub fn is_loaded(&self) -> bool {
        self.model.is_some()
    }

    /// Releases the model's memory (CPU and GPU). The next song loads it again.
    pub fn unload(&mut self) {
        if self.model.take().is_some() {
            tracing::debug!(model = %self.info.path.display(), "LLM released");
        }
    }

    /// Loads the model now if it is not in memory; returns the time that took (zero when resident).
    pub fn ensure_loaded(&mut self) -> Result<Duration, LoadError> {
        if self.model.is_some() {
            return Ok(Duration::ZERO);
        }
        let started = Instant::now();
        check_file(&self.info.path)?;
        let backend = llama_backend()?;
        let model = load_model(backend, &self.info.path, &model_params(self.gpu_layers))?;
        self.model = Some(model);
        let took = started.elapsed();
        tracing::debug!(model = %self.info.path.display(), seconds = took.as_secs_f64(), "LLM loaded");
        Ok(took)
    }

    /// Generates an answer for `brief`: the raw bytes and how it went. Loads the model first if it was
    /// released, and releases it afterwards unless it is kept resident. `should_stop` is polled between
    /// tokens; when it returns true this returns [`GenerateError::Cancelled`]. A timeout or the token limit
    /// is not an error: the answer so far comes back with its [`StopReason`].
    pub fn generate(
        &mut self,
        brief: &SongBrief,
        should_stop: &dyn Fn() -> bool,
    ) -> Result<Generation, GenerateError> {
        if should_stop() {
            return Err(GenerateError::Cancelled);
        }
        let started = Instant::now();
        let load_time = self.ensure_loaded()?;
        let outcome = catch_unwind(AssertUnwindSafe(|| self.run(brief, should_stop, started)));
        let result = match outcome {
            Ok(result) => result,
            Err(panic) => {
                // The binding's state is unknown after a panic: drop the model, reload it next time.
                self.model = None;
                Err(GenerateError::Panicked(panic_message(panic.as_ref())))
            }
        };
        if !self.keep_resident {
            self.unload();
        }
        result.map(|g| Generation { load_time, ..g })
    }

    fn run(
        &self,
        brief: &SongBrief,
        should_stop: &dyn Fn() -> bool,
        started: Instant,
    ) -> Result<Generation, GenerateError> {
        let Some(model) = self.model.as_ref() else {
            return Err(GenerateError::Decode("the model is not loaded".into()));
        };
        let backend = llama_backend()?;
        let deadline = started.checked_add(self.timeout);
        let timed_out = || deadline.is_some_and(|d| Instant::now() >= d);

        // The prompt: the newest recent titles, fewer if the context is tight.
        let system = prompt::system_message();
        let (example_request, example_answer) = prompt::example_exchange();
        let template = model.chat_template(None).ok();
        let mut titles = prompt::MAX_PROMPT_TITLES;
        let (tokens, prompt_format) = loop {
            let user = prompt::user_message(brief, titles);
            let messages = [
                ("system", system.as_str()),
                ("user", example_request.as_str()),
                ("assistant", example_answer.as_str()),
                ("user", user.as_str()),
            ];
            let (text, format) = render_prompt(model, template.as_ref(), &messages);
            let tokens = tokenize_prompt(model, &text);
            if count(tokens.len()) + MIN_ANSWER_TOKENS <= self.context_size || titles == 0 {
                break (tokens, format);
            }
            titles = 0;
        };
        let prompt_tokens = count(tokens.len());
        let room = self.context_size.saturating_sub(prompt_tokens);
        if room < MIN_ANSWER_TOKENS {
            return Err(GenerateError::PromptTooLong {
                prompt_tokens,
                context_tokens: self.context_size,
                train_tokens: self.info.n_ctx_train,
            });
        }
        let budget = self.max_tokens.min(room);
        let empty = |stop| Generation {
            raw: Vec::new(),
            stop,
            prompt_format,
            prompt_tokens,
            generated_tokens: 0,
            load_time: Duration::ZERO,
            prompt_time: Duration::ZERO,
            generation_time: Duration::ZERO,
        };
        if timed_out() {
            return Ok(empty(StopReason::Timeout));
        }

        let schema = prompt::answer_schema(brief);
        let grammar_text = llama_cpp_2::json_schema_to_grammar(&schema)
            .map_err(|e| GenerateError::Grammar(e.to_string()))?;
        let mut grammar = LlamaSampler::grammar(model, &grammar_text, "root")
            .map_err(|e| GenerateError::Grammar(e.to_string()))?;
        let mut chain = LlamaSampler::chain_simple([
            // Small models loop ("I am eet, I am eet, …"): DRY penalises repeating a sequence, the
            // repetition penalty repeating a token lately.
            LlamaSampler::dry(model, 0.8, 1.75, 2, 256, ["\n", ":", "\"", "*"]),
            LlamaSampler::penalties(model.n_vocab(), 64, 1.1, 0.0, 0.0),
            LlamaSampler::top_k(40),
            LlamaSampler::top_p(0.95, 1),
            LlamaSampler::min_p(0.05, 1),
            LlamaSampler::temp(0.8),
            LlamaSampler::dist(sampler_seed(brief.seed)),
        ]);

        // Room for prompt and answer, in whole batches.
        let n_ctx = (prompt_tokens + budget).div_ceil(BATCH_TOKENS) * BATCH_TOKENS;
        let n_ctx = n_ctx.min(self.context_size).max(prompt_tokens + budget);
        let threads = std::thread::available_parallelism()
            .map_or(4, |n| n.get())
            .min(16);
        let threads = i32::try_from(threads).unwrap_or(4);
        let n_batch = BATCH_TOKENS.min(n_ctx);
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(n_batch)
            .with_n_ubatch(n_batch)
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
        let mut ctx = model
            .new_context(backend, params)
            .map_err(|_| GenerateError::Context { tokens: n_ctx })?;

        // Read the prompt.
        let prompt_started = Instant::now();
        let batch_len = usize::try_from(n_batch).unwrap_or(512);
        let mut batch = LlamaBatch::new(batch_len, 1);
        let last = tokens.len().saturating_sub(1);
        for (chunk_index, chunk) in tokens.chunks(batch_len).enumerate() {
            if should_stop() {
                return Err(GenerateError::Cancelled);
            }
            if timed_out() {
                return Ok(Generation {
                    prompt_time: prompt_started.elapsed(),
                    ..empty(StopReason::Timeout)
                });
            }
            batch.clear();
            for (offset, token) in chunk.iter().enumerate() {
                let index = chunk_index * batch_len + offset;
                batch
                    .add(*token, position(index), &[0], index == last)
                    .map_err(|e| GenerateError::Decode(e.to_string()))?;
            }
            ctx.decode(&mut batch)
                .map_err(|e| GenerateError::Decode(e.to_string()))?;
        }
        let prompt_time = prompt_started.elapsed();

        // Generate.
        let generation_started = Instant::now();
        let vocab = model.vocab();
        let mut raw = Vec::new();
        let mut generated = 0u32;
        let mut next_position = tokens.len();
        let stop = loop {
            if should_stop() {
                return Err(GenerateError::Cancelled);
            }
            if timed_out() {
                break StopReason::Timeout;
            }
            if generated >= budget {
                break StopReason::TokenLimit;
            }
            let token = match sample(&ctx, batch.n_tokens() - 1, &mut chain, &mut grammar) {
                Ok(token) => token,
                // A model without an end-of-generation token has nothing the finished grammar allows.
                Err(_) if serde_json::from_slice::<serde_json::Value>(&raw).is_ok() => {
                    break StopReason::Finished;
                }
                Err(e) => return Err(e),
            };
            if vocab.is_eog(token) {
                break StopReason::Finished;
            }
            grammar
                .try_accept(token)
                .map_err(|e| GenerateError::Grammar(e.to_string()))?;
            chain.accept(token);
            vocab.token_to_piece_into(token, &mut raw, false, None);
            generated += 1;
            batch.clear();
            batch
                .add(token, position(next_position), &[0], true)
                .map_err(|e| GenerateError::Decode(e.to_string()))?;
            next_position += 1;
            ctx.decode(&mut batch)
                .map_err(|e| GenerateError::Decode(e.to_string()))?;
        };
        let generation_time = generation_started.elapsed();
        tracing::debug!(
            seed = brief.seed,
            prompt_tokens,
            generated_tokens = generated,
            tokens_per_second = f64::from(generated) / generation_time.as_secs_f64().max(1e-9),
            %stop,
            "LLM answer generated"
        );
        Ok(Generation {
            raw,
            stop,
            prompt_format,
            prompt_tokens,
            generated_tokens: generated,
            load_time: Duration::ZERO,
            prompt_time,
            generation_time,
        })
    }
}

fn model_params(gpu_layers: u32) -> LlamaModelParams {
    LlamaModelParams::default().with_n_gpu_layers(gpu_layers)
}

/// The sampler's 32-bit seed from the job's 64-bit seed (both halves count).
fn sampler_seed(seed: u64) -> u32 {
    // Truncation is the point: fold 64 bits into 32.
    ((seed >> 32) ^ (seed & 0xFFFF_FFFF)) as u32
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn position(index: usize) -> i32 {
    i32::try_from(index).unwrap_or(i32::MAX)
}

/// Formats `(role, content)` messages (a system message, then user and assistant turns) with the model's
/// chat template, or with a plain layout when the model has none or llama.cpp cannot apply it.
pub(crate) fn render_prompt(
    model: &LlamaModel,
    template: Option<&LlamaChatTemplate>,
    messages: &[(&str, &str)],
) -> (String, PromptFormat) {
    if let Some(template) = template {
        let messages = messages
            .iter()
            .map(|(role, content)| LlamaChatMessage::new((*role).into(), (*content).into()))
            .collect::<Result<Vec<_>, _>>();
        match messages.map(|m| model.apply_chat_template(template, &m, true)) {
            Ok(Ok(text)) => return (text, PromptFormat::ModelTemplate),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "llama.cpp cannot apply the model's chat template; using the plain prompt")
            }
            Err(e) => {
                tracing::debug!(error = %e, "prompt not usable as a chat message; using the plain prompt")
            }
        }
    }
    let mut text = String::new();
    for (role, content) in messages {
        match *role {
            "user" => text.push_str(&format!("### Request\n{content}\n\n### Answer (JSON)\n")),
            "assistant" => text.push_str(&format!("{content}\n\n")),
            _ => text.push_str(&format!("{content}\n\n")),
        }
    }
    (text, PromptFormat::Fallback)
}

/// Tokenises the prompt with special tokens parsed; adds the model's BOS unless the template already did.
fn tokenize_prompt(model: &LlamaModel, text: &str) -> Vec<LlamaToken> {
    let vocab = model.vocab();
    let mut tokens = vocab.tokenize(text.as_bytes(), true, true);
    let bos = vocab.bos();
    if tokens.len() >= 2 && tokens[0] == bos && tokens[1] == bos {
        tokens.remove(0);
    }
    tokens
}

/// Picks the next token: the free chain's choice when the grammar allows it, else the chain's choice
/// among the tokens the grammar allows.
fn sample(
    ctx: &LlamaContext<'_>,
    index: i32,
    chain: &mut LlamaSampler,
    grammar: &mut LlamaSampler,
) -> Result<LlamaToken, GenerateError> {
    let mut candidates = ctx.token_data_array_ith(index);
    chain.apply(&mut candidates);
    if let Some(token) = candidates.selected_token() {
        let mut single =
            LlamaTokenDataArray::new(vec![LlamaTokenData::new(token, 1.0, 0.0)], false);
        grammar.apply(&mut single);
        if single.data.first().is_some_and(|d| d.logit().is_finite()) {
            return Ok(token);
        }
    }
    let mut candidates = ctx.token_data_array_ith(index);
    grammar.apply(&mut candidates);
    chain.apply(&mut candidates);
    let chosen = candidates
        .selected
        .and_then(|i| candidates.data.get(i))
        .filter(|d| d.logit().is_finite());
    match chosen {
        Some(d) => Ok(d.id()),
        None => Err(GenerateError::Grammar(
            "no token the grammar allows is left (the model and the grammar disagree)".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-songwriter.gguf")
    }

    #[test]
    fn the_prompt_falls_back_when_the_template_is_unknown() {
        let backend = llama_backend().expect("backend");
        let model = load_model(backend, &fixture(), &model_params(0)).expect("tiny model loads");
        let own = model
            .chat_template(None)
            .expect("the fixture has a ChatML template");
        let (text, format) =
            render_prompt(&model, Some(&own), &[("system", "sys"), ("user", "hello")]);
        assert_eq!(format, PromptFormat::ModelTemplate);
        assert!(text.contains("<|im_start|>user\nhello<|im_end|>"), "{text}");
        assert!(text.ends_with("<|im_start|>assistant\n"), "{text}");

        let unknown = LlamaChatTemplate::new("{{ no template llama.cpp knows }}").expect("no NUL");
        let (text, format) = render_prompt(
            &model,
            Some(&unknown),
            &[("system", "sys"), ("user", "hello")],
        );
        assert_eq!(format, PromptFormat::Fallback);
        assert!(text.starts_with("sys\n\n### Request\nhello"), "{text}");
        let (_, format) = render_prompt(&model, None, &[("system", "sys"), ("user", "hello")]);
        assert_eq!(format, PromptFormat::Fallback);
    }

    #[test]
    fn the_backend_starts_once_and_is_shared() {
        let a = llama_backend().expect("first");
        let b = llama_backend().expect("second");
        assert!(std::ptr::eq(a, b));
        // A direct second init is what the OnceLock prevents: llama-cpp-2 refuses it.
        assert!(LlamaBackend::init().is_err());
    }

    #[test]
    fn seeds_fold_both_halves() {
        assert_ne!(sampler_seed(1), sampler_seed(1 << 32 | 1));
        assert_eq!(sampler_seed(7), 7);
    }
}
