//! Song writer settings, read from the environment.

use std::path::PathBuf;
use std::time::Duration;

use radio_shared::config::{ConfigError, Env};

/// Default `LLM_CONTEXT_SIZE`: tokens of context (prompt plus answer); clamped to the model's training context.
pub const DEFAULT_CONTEXT_SIZE: u32 = 4096;
/// Default `LLM_MAX_TOKENS`: the most tokens one answer may have. A 4-minute song's JSON is about 600 tokens.
pub const DEFAULT_MAX_TOKENS: u32 = 1024;
/// Default `LLM_TIMEOUT_SECS`: the wall-time limit for one answer, prompt included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// How the song writer is configured.
#[derive(Debug, Clone, PartialEq)]
pub struct SongWriterConfig {
    /// The GGUF model (`LLM_MODEL_PATH`, or the legacy `LLM_MODEL_NAME` when it names a `.gguf` file);
    /// `None` uses the template writer only.
    pub model_path: Option<PathBuf>,
    /// Layers to offload to the GPU (`LLM_GPU_LAYERS`); `None` takes the memory plan's number.
    /// `u32::MAX` means all of them.
    pub gpu_layers: Option<u32>,
    /// Context size in tokens (`LLM_CONTEXT_SIZE`), clamped to the model's training context when loaded.
    pub context_size: u32,
    /// The most tokens one answer may have (`LLM_MAX_TOKENS`).
    pub max_tokens: u32,
    /// Wall-time limit for one answer (`LLM_TIMEOUT_SECS`); when it passes, the answer so far is repaired or
    /// replaced by the template writer's.
    pub timeout: Duration,
    /// Refuse to start without a working model (`LLM_REQUIRED`); when false a missing or corrupt model is
    /// logged once and the template writer is used.
    pub required: bool,
}

impl Default for SongWriterConfig {
    fn default() -> Self {
        Self {
            model_path: None,
            gpu_layers: None,
            context_size: DEFAULT_CONTEXT_SIZE,
            max_tokens: DEFAULT_MAX_TOKENS,
            timeout: DEFAULT_TIMEOUT,
            required: false,
        }
    }
}

/// Where the memory plan puts the LLM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LlmPlacement {
    /// Layers the plan offloads to the GPU (0 on CPU). `LLM_GPU_LAYERS` overrides it.
    pub gpu_layers: u32,
    /// Keep the model loaded between songs. When false, the model is loaded for each song and released
    /// right after, so a small GPU can give its memory to ACE-Step between phases.
    pub keep_resident: bool,
}

impl Default for LlmPlacement {
    /// CPU only, kept resident.
    fn default() -> Self {
        Self {
            gpu_layers: 0,
            keep_resident: true,
        }
    }
}

impl SongWriterConfig {
    /// Reads `LLM_MODEL_PATH` (or `LLM_MODEL_NAME` when it is a path to a `.gguf` file), `LLM_GPU_LAYERS`,
    /// `LLM_CONTEXT_SIZE`, `LLM_MAX_TOKENS`, `LLM_TIMEOUT_SECS` and `LLM_REQUIRED`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Self::from_lookup(|name| env.raw(name))
    }

    /// Like [`SongWriterConfig::from_env`], reading values through `lookup` (tests pass a map). `lookup`
    /// returns `None` for unset names.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let invalid = |name: &str, value: String, expected: &str| ConfigError {
            name: name.into(),
            value,
            expected: expected.into(),
        };

        let model_path = match (get("LLM_MODEL_PATH"), get("LLM_MODEL_NAME")) {
            (Some(path), _) => Some(PathBuf::from(path.trim())),
            (None, Some(name)) if name.trim().to_ascii_lowercase().ends_with(".gguf") => {
                Some(PathBuf::from(name.trim()))
            }
            (None, Some(name)) => {
                tracing::warn!(
                    LLM_MODEL_NAME = %name,
                    "LLM_MODEL_NAME names a model, not a .gguf file; this worker does not download models. Set LLM_MODEL_PATH to a local GGUF file to use an LLM"
                );
                None
            }
            (None, None) => None,
        };

        let gpu_layers = match get("LLM_GPU_LAYERS") {
            None => None,
            Some(v) => {
                let t = v.trim().to_ascii_lowercase();
                if t == "all" || t == "max" || t == "-1" {
                    Some(u32::MAX)
                } else {
                    Some(t.parse::<u32>().map_err(|_| {
                        invalid(
                            "LLM_GPU_LAYERS",
                            v.clone(),
                            "a number of layers (0 keeps the LLM on the CPU) or \"all\"",
                        )
                    })?)
                }
            }
        };

        let number = |name: &str,
                      default: u32,
                      range: std::ops::RangeInclusive<u32>,
                      what: &str| match get(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(|| {
                    invalid(
                        name,
                        v.clone(),
                        &format!("{what} from {} to {}", range.start(), range.end()),
                    )
                }),
        };
        let context_size = number(
            "LLM_CONTEXT_SIZE",
            DEFAULT_CONTEXT_SIZE,
            256..=1_048_576,
            "a number of tokens",
        )?;
        let max_tokens = number(
            "LLM_MAX_TOKENS",
            DEFAULT_MAX_TOKENS,
            1..=65_536,
            "a number of tokens",
        )?;

        let timeout = match get("LLM_TIMEOUT_SECS") {
            None => DEFAULT_TIMEOUT,
            Some(v) => v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && (0.0..=86_400.0).contains(s))
                .map(Duration::from_secs_f64)
                .ok_or_else(|| {
                    invalid(
                        "LLM_TIMEOUT_SECS",
                        v.clone(),
                        "a number of seconds from 0 to 86400, e.g. 120 or 2.5",
                    )
                })?,
        };

        let required = match get("LLM_REQUIRED") {
            None => false,
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => {
                    return Err(invalid(
                        "LLM_REQUIRED",
                        v,
                        "one of 1, 0, true, false, yes, no, on, off",
                    ));
                }
            },
        };

        Ok(Self {
            model_path,
            gpu_layers,
            context_size,
            max_tokens,
            timeout,
            required,
        })
    }

    /// The GPU layers to use: `LLM_GPU_LAYERS` when set, else the plan's.
    pub fn effective_gpu_layers(&self, placement: LlmPlacement) -> u32 {
        self.gpu_layers.unwrap_or(placement.gpu_layers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<SongWriterConfig, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        SongWriterConfig::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let c = config(&[]).expect("defaults");
        assert_eq!(c, SongWriterConfig::default());
        assert_eq!(c.context_size, 4096);
        assert_eq!(c.max_tokens, 1024);
        assert_eq!(c.timeout, Duration::from_secs(120));
        assert!(!c.required);
    }

    #[test]
    fn every_setting_is_read() {
        let c = config(&[
            ("LLM_MODEL_PATH", "/models/gemma.gguf"),
            ("LLM_GPU_LAYERS", "20"),
            ("LLM_CONTEXT_SIZE", "2048"),
            ("LLM_MAX_TOKENS", "512"),
            ("LLM_TIMEOUT_SECS", "2.5"),
            ("LLM_REQUIRED", "yes"),
        ])
        .expect("valid");
        assert_eq!(c.model_path, Some(PathBuf::from("/models/gemma.gguf")));
        assert_eq!(c.gpu_layers, Some(20));
        assert_eq!(c.context_size, 2048);
        assert_eq!(c.max_tokens, 512);
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert!(c.required);
        assert_eq!(
            c.effective_gpu_layers(LlmPlacement {
                gpu_layers: 5,
                keep_resident: true
            }),
            20
        );
        assert_eq!(
            config(&[("LLM_GPU_LAYERS", "all")])
                .ok()
                .and_then(|c| c.gpu_layers),
            Some(u32::MAX)
        );
    }

    #[test]
    fn the_plan_decides_gpu_layers_unless_overridden() {
        let c = config(&[]).expect("defaults");
        let placement = LlmPlacement {
            gpu_layers: 12,
            keep_resident: false,
        };
        assert_eq!(c.effective_gpu_layers(placement), 12);
    }

    #[test]
    fn the_legacy_name_is_used_only_for_gguf_paths() {
        let c = config(&[("LLM_MODEL_NAME", "/m/old.GGUF")]).expect("valid");
        assert_eq!(c.model_path, Some(PathBuf::from("/m/old.GGUF")));
        let c = config(&[("LLM_MODEL_NAME", "google/gemma-3n-E4B-it")]).expect("valid");
        assert_eq!(c.model_path, None);
        let c = config(&[
            ("LLM_MODEL_PATH", "/m/new.gguf"),
            ("LLM_MODEL_NAME", "/m/old.gguf"),
        ])
        .expect("valid");
        assert_eq!(c.model_path, Some(PathBuf::from("/m/new.gguf")));
    }

    #[test]
    fn bad_values_name_the_setting_and_what_it_accepts() {
        for (name, value, hint) in [
            ("LLM_GPU_LAYERS", "lots", "\"all\""),
            ("LLM_CONTEXT_SIZE", "12", "256"),
            ("LLM_MAX_TOKENS", "0", "tokens"),
            ("LLM_TIMEOUT_SECS", "-1", "seconds"),
            ("LLM_REQUIRED", "maybe", "true"),
        ] {
            let err = config(&[(name, value)]).expect_err(name);
            assert_eq!(err.name, name);
            let text = err.to_string();
            assert!(text.contains(name) && text.contains(hint), "{text}");
        }
    }
}
