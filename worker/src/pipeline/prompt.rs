//! The caption and lyric prompts of ACE-Step 1.5 (ACESTEP.md steps 1–2) and their tokenisation.

use std::fmt::Write;
use std::path::Path;

use tokenizers::Tokenizer;
use tokenizers::utils::truncation::TruncationParams;

use super::{PipelineError, RenderRequest};

/// Caption prompts are cut to this many tokens (special tokens included).
pub const CAPTION_MAX_TOKENS: usize = 256;
/// Lyric prompts are cut to this many tokens (special tokens included).
pub const LYRIC_MAX_TOKENS: usize = 2048;

const NOT_AVAILABLE: &str = "N/A";

/// The caption prompt of step 1. Every line ends with `\n`, the last one after `<|endoftext|>`; the
/// tokenizer's post-processor appends one more `<|endoftext|>`. The duration is the requested one,
/// truncated to whole seconds.
pub fn caption_prompt(request: &RenderRequest) -> String {
    let mut prompt = String::with_capacity(256 + request.caption.len());
    let or_na = |value: Option<String>| value.unwrap_or_else(|| NOT_AVAILABLE.to_string());
    // Writing to a String cannot fail.
    let _ = write!(
        prompt,
        "# Instruction\n\
         Fill the audio semantic mask based on the given conditions:\n\
         \n\
         # Caption\n\
         {caption}\n\
         \n\
         # Metas\n\
         - bpm: {bpm}\n\
         - timesignature: {ts}\n\
         - keyscale: {key}\n\
         - duration: {duration} seconds\n\
         <|endoftext|>\n",
        caption = request.caption,
        bpm = or_na(request.bpm.map(|b| b.to_string())),
        ts = or_na(request.timesignature.map(|t| t.to_string())),
        key = or_na(request.keyscale.clone()),
        duration = request.duration_s.max(0.0).trunc() as u32,
    );
    prompt
}

/// The lyric prompt of step 2: `# Languages\n{lang}\n\n# Lyric\n{lyrics}<|endoftext|>`.
pub fn lyric_prompt(request: &RenderRequest) -> String {
    let language = match request.language.trim() {
        "" => "unknown",
        lang => lang,
    };
    let lyrics = match request.lyrics.trim() {
        "" => super::INSTRUMENTAL,
        _ => request.lyrics.as_str(),
    };
    format!("# Languages\n{language}\n\n# Lyric\n{lyrics}<|endoftext|>")
}

/// The pack's tokenizer, configured once for each prompt's truncation.
#[derive(Debug, Clone)]
pub(crate) struct PromptTokenizer {
    /// Truncates to [`CAPTION_MAX_TOKENS`].
    caption: Tokenizer,
    /// Truncates to [`LYRIC_MAX_TOKENS`].
    lyric: Tokenizer,
}

impl PromptTokenizer {
    /// Loads `tokenizer.json`; the error text is ready for a pack problem list.
    pub(crate) fn load(path: &Path) -> Result<Self, String> {
        let base = Tokenizer::from_file(path).map_err(|e| e.to_string())?;
        let truncated = |max_length| -> Result<Tokenizer, String> {
            let mut tokenizer = base.clone();
            tokenizer
                .with_truncation(Some(TruncationParams {
                    max_length,
                    ..TruncationParams::default()
                }))
                .map_err(|e| e.to_string())?;
            Ok(tokenizer)
        };
        Ok(Self {
            caption: truncated(CAPTION_MAX_TOKENS)?,
            lyric: truncated(LYRIC_MAX_TOKENS)?,
        })
    }

    /// Token ids of the caption prompt.
    pub(crate) fn caption_ids(&self, request: &RenderRequest) -> Result<Vec<i64>, PipelineError> {
        encode(&self.caption, &caption_prompt(request), "caption")
    }

    /// Token ids of the lyric prompt.
    pub(crate) fn lyric_ids(&self, request: &RenderRequest) -> Result<Vec<i64>, PipelineError> {
        encode(&self.lyric, &lyric_prompt(request), "lyric")
    }
}

fn encode(
    tokenizer: &Tokenizer,
    text: &str,
    prompt: &'static str,
) -> Result<Vec<i64>, PipelineError> {
    let encoding = tokenizer
        .encode(text, true)
        .map_err(|e| PipelineError::Tokenizer {
            prompt,
            message: e.to_string(),
        })?;
    let ids: Vec<i64> = encoding.get_ids().iter().map(|&id| i64::from(id)).collect();
    if ids.is_empty() {
        return Err(PipelineError::Tokenizer {
            prompt,
            message: "the prompt produced no tokens".into(),
        });
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caption_prompt_is_exactly_the_contract_text() {
        let mut request = RenderRequest::instrumental("dreamy lofi, soft piano", 30.7, 1);
        request.bpm = Some(90);
        request.keyscale = Some("F# minor".into());
        assert_eq!(
            caption_prompt(&request),
            "# Instruction\nFill the audio semantic mask based on the given conditions:\n\n\
             # Caption\ndreamy lofi, soft piano\n\n# Metas\n- bpm: 90\n- timesignature: N/A\n\
             - keyscale: F# minor\n- duration: 30 seconds\n<|endoftext|>\n"
        );
    }

    #[test]
    fn lyric_prompt_defaults_to_instrumental_and_unknown() {
        let mut request = RenderRequest::instrumental("x", 10.0, 1);
        request.lyrics = "  ".into();
        request.language = String::new();
        assert_eq!(
            lyric_prompt(&request),
            "# Languages\nunknown\n\n# Lyric\n[Instrumental]<|endoftext|>"
        );
        request.lyrics = "[verse]\nla la".into();
        request.language = "en".into();
        assert_eq!(
            lyric_prompt(&request),
            "# Languages\nen\n\n# Lyric\n[verse]\nla la<|endoftext|>"
        );
    }
}
