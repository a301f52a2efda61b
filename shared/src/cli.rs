//! Command-line flags that describe a song, shared by `radioctl enqueue` and `radio-worker generate` so
//! both take exactly the same spelling.

use std::path::PathBuf;

use crate::job::{SongRequest, normalize_keyscale};

/// The song a user fixes from the command line.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SongArgs {
    /// What the music sounds like, e.g. "dreamy lofi hip hop, soft piano, vinyl crackle".
    #[arg(long)]
    pub caption: Option<String>,
    /// Lyrics with section tags (`[verse]`, `[chorus]`); `[Instrumental]` for none.
    #[arg(long, conflicts_with = "lyrics_file")]
    pub lyrics: Option<String>,
    /// Read the lyrics from a file.
    #[arg(long, value_name = "FILE")]
    pub lyrics_file: Option<PathBuf>,
    /// Length of the track in seconds.
    #[arg(long, default_value_t = 30.0)]
    pub duration: f32,
    /// Seed for reproducible output.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Tempo in beats per minute (30–300).
    #[arg(long, value_parser = clap::value_parser!(u16).range(30..=300))]
    pub bpm: Option<u16>,
    /// Key and scale, e.g. "C major" or "F# minor".
    #[arg(long = "key", value_name = "KEY")]
    pub keyscale: Option<String>,
    /// Beats per bar: 2, 3, 4 or 6.
    #[arg(long, value_parser = ["2", "3", "4", "6"])]
    pub timesignature: Option<String>,
    /// Lyrics language as an ISO 639-1 code, e.g. en, es, ja.
    #[arg(long)]
    pub language: Option<String>,
    /// Timestep shift of the turbo schedule (3 is the model's default).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=3))]
    pub shift: Option<u8>,
}

impl SongArgs {
    /// The request these flags describe; reads `--lyrics-file`. Errors are ready to print.
    pub fn to_request(&self) -> Result<SongRequest, String> {
        let lyrics = match (&self.lyrics, &self.lyrics_file) {
            (Some(text), _) => Some(text.clone()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read --lyrics-file {}: {e}", path.display()))?,
            ),
            (None, None) => None,
        };
        let keyscale = match &self.keyscale {
            Some(k) => Some(normalize_keyscale(k).ok_or_else(|| {
                format!("--key {k:?} is not a key like \"C major\" or \"F# minor\"")
            })?),
            None => None,
        };
        Ok(SongRequest {
            duration_s: self.duration,
            caption: self.caption.clone(),
            lyrics,
            seed: self.seed,
            bpm: self.bpm,
            keyscale,
            timesignature: self.timesignature.as_deref().and_then(|t| t.parse().ok()),
            language: self.language.clone(),
            shift: self.shift,
        })
    }
}
