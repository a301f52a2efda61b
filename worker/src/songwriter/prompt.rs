//! What the LLM is told: the chat messages and the JSON schema its answer must follow.
//!
//! The schema asks only for the fields the requester left open, in the order title, caption, bpm,
//! keyscale, timesignature, lyrics (lyrics last: a token limit then cuts the lyrics, not the caption).
//! Lyrics are an array of `{section, lines}` objects with bounded counts, so even a weak model writes
//! section-tagged lyrics of the right size; Rust renders them as `[verse]` text.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::lyrics::{MAX_LINE_CHARS, SECTION_TAGS};
use super::{MAX_CAPTION_CHARS, MAX_TITLE_CHARS, SongBrief};

/// At most this many recent titles are listed in the prompt (the newest ones, i.e. the last).
pub(crate) const MAX_PROMPT_TITLES: usize = 20;

/// The keys the schema offers (ACE-Step accepts these spellings).
const SCHEMA_KEYS: [&str; 12] = [
    "C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B",
];

/// The system message: the job, in a few words. Field-by-field instructions are left to the schema and
/// the example: a small model copies instruction text into its answer ("A short, new song title").
pub(crate) fn system_message() -> String {
    "You are the songwriter of a radio station. For each request, invent one new, original song and \
     answer with its JSON object only."
        .to_string()
}

/// One request and its answer, shown before the real request: what a good answer looks like. Its station
/// shares nothing with real ones (quality checks catch a copied example).
pub(crate) fn example_exchange() -> (String, String) {
    let request = "Genre: indie rock\nTheme: a road trip with old friends\nLength: 60 seconds\n\
                   Lyrics language: English (en)\n\
                   Lyrics size: 3 sections (verse, chorus, verse), about 4 lines each.\n\
                   Answer with the JSON object only.";
    let answer = r#"{"title":"Rust on the Dashboard","caption":"jangly indie rock, warm and nostalgic, chiming guitars, driving bass, loose drums, raspy male vocals","bpm":124,"keyscale":"D major","timesignature":4,"lyrics":[{"section":"verse","lines":["Four of us and a borrowed van","Maps unfolding on our knees","Every exit is a plan","Windows down to catch the breeze"]},{"section":"chorus","lines":["Keep the engine humming","Sing it out of tune","We were never younger","Than under this moon"]},{"section":"verse","lines":["Gas station coffee, broken strings","Polaroids of who we were","Keep the small and silly things","Long after the miles blur"]}]}"#;
    (request.to_string(), answer.to_string())
}

/// What the model is shown besides the station's settings: the texts a title, caption or lyric line must
/// not copy (see `quality`).
pub(crate) fn instruction_texts(brief: &SongBrief) -> Vec<String> {
    let (request, answer) = example_exchange();
    vec![
        system_message(),
        request,
        answer,
        user_message(brief, MAX_PROMPT_TITLES),
    ]
}

/// The user message: this station, this song.
pub(crate) fn user_message(brief: &SongBrief, max_titles: usize) -> String {
    let station = &brief.station;
    let mut m = String::new();
    let _ = writeln!(m, "Genre: {}", sanitize(&station.genre, 200));
    if !station.theme.trim().is_empty() {
        let _ = writeln!(m, "Theme: {}", sanitize(&station.theme, 300));
    }
    if !station.style.trim().is_empty() {
        let _ = writeln!(m, "Style: {}", sanitize(&station.style, 300));
    }
    let seconds = brief.duration_s().round();
    let _ = writeln!(m, "Length: {seconds} seconds");
    if brief.instrumental() {
        let _ = writeln!(m, "Vocals: none, this is an instrumental track.");
    } else {
        let plan = brief.lyrics_plan();
        let _ = writeln!(m, "Lyrics language: {}", language_name(&brief.language()));
        let _ = writeln!(
            m,
            "Lyrics size: {} sections ({}), about {} lines each.",
            plan.target_sections,
            plan.sequence().join(", "),
            plan.target_lines
        );
    }
    let mut fixed = Vec::new();
    if let Some(caption) = brief.fixed_caption() {
        fixed.push(format!("caption \"{}\"", sanitize(caption, 400)));
    }
    if let Some(bpm) = brief.fixed_bpm() {
        fixed.push(format!("{bpm} bpm"));
    }
    if let Some(key) = brief.fixed_keyscale() {
        fixed.push(format!("key {key}"));
    }
    if let Some(ts) = brief.fixed_timesignature() {
        fixed.push(format!("{ts} beats per bar"));
    }
    if !fixed.is_empty() {
        let _ = writeln!(m, "Already chosen by the listener: {}.", fixed.join("; "));
    }
    if let Some(lyrics) = brief.fixed_lyrics() {
        let _ = writeln!(
            m,
            "The lyrics are given; match the caption to them:\n{}",
            sanitize_multiline(lyrics, 1500)
        );
    }
    let recent: Vec<String> = brief
        .recent_titles
        .iter()
        .rev()
        .take(max_titles)
        .map(|t| format!("\"{}\"", sanitize(t, 80)))
        .collect();
    if !recent.is_empty() {
        let _ = writeln!(m, "Recent titles (do not reuse): {}", recent.join(", "));
    }
    m.push_str("Answer with the JSON object only.");
    m
}

/// Removes what could pose as chat markup (`<`, `>`), control characters and newlines, and cuts to `max`
/// characters. Station settings come from Discord users.
pub(crate) fn sanitize(text: &str, max: usize) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .filter(|c| !matches!(c, '<' | '>'))
        .collect();
    let collapsed = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed.chars().take(max).collect()
}

fn sanitize_multiline(text: &str, max: usize) -> String {
    let lines: Vec<String> = text.lines().map(|l| sanitize(l, 200)).collect();
    lines.join("\n").chars().take(max).collect()
}

/// The English name of a language code, for the prompt; the code itself when unknown.
pub(crate) fn language_name(code: &str) -> String {
    let name = match code {
        "en" => "English",
        "es" => "Spanish",
        "fr" => "French",
        "de" => "German",
        "it" => "Italian",
        "pt" => "Portuguese",
        "nl" => "Dutch",
        "sv" => "Swedish",
        "no" | "nb" => "Norwegian",
        "da" => "Danish",
        "fi" => "Finnish",
        "pl" => "Polish",
        "cs" => "Czech",
        "ru" => "Russian",
        "uk" => "Ukrainian",
        "tr" => "Turkish",
        "el" => "Greek",
        "ar" => "Arabic",
        "he" => "Hebrew",
        "hi" => "Hindi",
        "ja" => "Japanese",
        "ko" => "Korean",
        "zh" => "Chinese",
        "vi" => "Vietnamese",
        "th" => "Thai",
        "id" => "Indonesian",
        "ms" => "Malay",
        "hu" => "Hungarian",
        "ro" => "Romanian",
        "unknown" => return "any language that suits the song".to_string(),
        other => return format!("the language with ISO code \"{other}\""),
    };
    format!("{name} ({code})")
}

/// The caption's pattern: it starts with the station's genre and goes on in plain words (letters,
/// spaces, commas, hyphens, apostrophes), so a small model describes the sound instead of telling a story,
/// and cannot put markup or numbers in it. Up to [`MAX_CAPTION_CHARS`] characters in all.
fn caption_pattern(brief: &SongBrief) -> String {
    let genre: String = sanitize(&brief.station.genre, 60)
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '&'))
        .collect();
    let genre = genre.trim();
    let rest = MAX_CAPTION_CHARS
        .saturating_sub(genre.chars().count() + 2)
        .max(20);
    if genre.is_empty() {
        return format!("^[a-zA-Z][a-zA-Z ,'-]{{9,{rest}}}$");
    }
    format!("^{genre}, [a-zA-Z][a-zA-Z ,'-]{{9,{rest}}}$")
}

/// The JSON schema of the answer for `brief`, as text: only the fields the requester left open, in a fixed
/// order (llama.cpp's grammar keeps the schema's property order; `serde_json`'s map would sort them).
pub(crate) fn answer_schema(brief: &SongBrief) -> String {
    let mut properties: Vec<(&str, String)> = Vec::new();
    let mut add = |name: &'static str, schema: Value| properties.push((name, schema.to_string()));
    add(
        "title",
        json!({"type": "string", "minLength": 1, "maxLength": MAX_TITLE_CHARS}),
    );
    if brief.fixed_caption().is_none() {
        add(
            "caption",
            json!({"type": "string", "pattern": caption_pattern(brief)}),
        );
    }
    if brief.fixed_bpm().is_none() {
        add(
            "bpm",
            json!({"type": "integer", "minimum": 30, "maximum": 300}),
        );
    }
    if brief.fixed_keyscale().is_none() {
        let keys: Vec<String> = SCHEMA_KEYS
            .iter()
            .flat_map(|note| [format!("{note} major"), format!("{note} minor")])
            .collect();
        add("keyscale", json!({"enum": keys}));
    }
    if brief.fixed_timesignature().is_none() {
        add("timesignature", json!({"enum": [2, 3, 4, 6]}));
    }
    if brief.fixed_lyrics().is_none() && !brief.instrumental() {
        let plan = brief.lyrics_plan();
        // Written as text so "section" stays before "lines" (the unit test checks it is JSON).
        let lyrics = format!(
            r#"{{"type":"array","minItems":{min},"maxItems":{max},"items":{{"type":"object","properties":{{"section":{{"enum":{tags}}},"lines":{{"type":"array","minItems":1,"maxItems":{lines},"items":{{"type":"string","minLength":1,"maxLength":{chars}}}}}}},"required":["section","lines"],"additionalProperties":false}}}}"#,
            min = plan.min_sections.max(2).min(plan.max_sections),
            max = plan.max_sections,
            tags = Value::from(SECTION_TAGS.to_vec()),
            lines = plan.max_lines,
            chars = MAX_LINE_CHARS,
        );
        properties.push(("lyrics", lyrics));
    }
    let props: Vec<String> = properties
        .iter()
        .map(|(name, schema)| format!("{}:{schema}", Value::from(*name)))
        .collect();
    let required: Vec<Value> = properties
        .iter()
        .map(|(name, _)| Value::from(*name))
        .collect();
    format!(
        "{{\"type\":\"object\",\"properties\":{{{}}},\"required\":{},\"additionalProperties\":false}}",
        props.join(","),
        Value::from(required)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use radio_shared::job::{SongRequest, Station};

    fn brief() -> SongBrief {
        SongBrief {
            station: Station {
                genre: "synthwave <|im_start|>".into(),
                theme: "neon\nnights".into(),
                style: String::new(),
                language: "fr".into(),
                instrumental: false,
            },
            request: SongRequest {
                duration_s: 120.0,
                bpm: Some(100),
                ..SongRequest::default()
            },
            recent_titles: (0..30).map(|i| format!("Song {i}")).collect(),
            seed: 1,
        }
    }

    #[test]
    fn the_prompt_carries_the_station_and_strips_markup() {
        let m = user_message(&brief(), MAX_PROMPT_TITLES);
        assert!(m.contains("Genre: synthwave |im_start|"), "{m}");
        assert!(m.contains("Theme: neon nights"));
        assert!(m.contains("French (fr)"));
        assert!(m.contains("100 bpm"));
        assert!(
            m.contains("\"Song 29\"") && !m.contains("\"Song 9\""),
            "{m}"
        );
    }

    #[test]
    fn the_schema_asks_only_for_open_fields() {
        let schema = answer_schema(&brief());
        let parsed: Value = serde_json::from_str(&schema).expect("valid JSON");
        assert_eq!(
            parsed["required"],
            json!(["title", "caption", "keyscale", "timesignature", "lyrics"])
        );
        let at = |name: &str| schema.find(&format!("\"{name}\":{{")).expect(name);
        assert!(at("title") < at("caption") && at("caption") < at("keyscale"));
        assert!(
            at("timesignature") < at("lyrics"),
            "lyrics come last: {schema}"
        );
        assert!(parsed["properties"].get("bpm").is_none(), "bpm was fixed");
        let mut instrumental = brief();
        instrumental.station.instrumental = true;
        let parsed: Value =
            serde_json::from_str(&answer_schema(&instrumental)).expect("valid JSON");
        assert!(parsed["properties"].get("lyrics").is_none());
    }
}
