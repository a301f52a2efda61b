//! Parse, validate and repair what the LLM wrote.
//!
//! This step is separate from generation so it can be tested on any byte string: invalid UTF-8, JSON cut
//! off by a token limit, values out of range, missing fields, an empty answer. Model output is outside
//! data: nothing here panics on it.

use std::fmt;

use radio_shared::job::{TIME_SIGNATURES, normalize_keyscale};
use serde_json::{Map, Value};

use super::lyrics::{self, Section};
use super::quality::{self, Finding, Flaw, Instructions};
use super::{MAX_CAPTION_CHARS, MAX_TITLE_CHARS, SongBrief, SongDescription, lenient_json};

/// A field of a song description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SongField {
    /// The title.
    Title,
    /// The caption.
    Caption,
    /// The lyrics.
    Lyrics,
    /// The tempo.
    Bpm,
    /// The key.
    Keyscale,
    /// The time signature.
    Timesignature,
    /// The lyrics language.
    Language,
}

impl SongField {
    /// The field's name in JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            SongField::Title => "title",
            SongField::Caption => "caption",
            SongField::Lyrics => "lyrics",
            SongField::Bpm => "bpm",
            SongField::Keyscale => "keyscale",
            SongField::Timesignature => "timesignature",
            SongField::Language => "language",
        }
    }
}

impl fmt::Display for SongField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A description built from the LLM's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repaired {
    /// The description: the LLM's fields where they were valid or could be repaired, the template writer's
    /// elsewhere. Requester-fixed fields are applied later, by the caller.
    pub description: SongDescription,
    /// Fields the LLM was asked for that had to be repaired or replaced.
    pub repaired: Vec<SongField>,
    /// What [`quality::inspect`] found in the answer (each such field was replaced or thinned).
    pub findings: Vec<Finding>,
}

/// Why an answer cannot be used at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    /// Nothing but whitespace (or nothing at all) was generated.
    #[error("the answer is empty")]
    Empty,
    /// The answer has no JSON object in it.
    #[error("the answer holds no JSON object")]
    NoObject,
    /// The answer has no caption with words in it (the field ACE-Step depends on most).
    #[error("the answer has no usable caption")]
    NoCaption,
    /// None of the fields the LLM was asked to write could be used.
    #[error("none of the answer's fields could be used")]
    NothingUsable,
}

/// Turns the LLM's raw bytes into a description for `brief`.
///
/// Bytes that are not UTF-8 (a token limit can cut a character in half) are dropped; strict JSON is tried
/// first, then a forgiving reader that keeps whatever was complete. Every field is then checked and
/// repaired: control characters stripped, overlong text cut at a word, bpm clamped to 30–300, keys such as
/// `Am` or `f# MINOR` normalised, time signatures such as `3/4` read as 3, lyrics given section tags and cut
/// to the duration. What is missing or beyond repair comes from `template` (the template writer's
/// description for the same brief). Fails only when the answer cannot be used at all; the caller then
/// uses `template` whole.
pub fn repair_llm_output(
    raw: &[u8],
    brief: &SongBrief,
    template: &SongDescription,
) -> Result<Repaired, Unusable> {
    let text = String::from_utf8_lossy(raw);
    if text.trim().is_empty() {
        return Err(Unusable::Empty);
    }
    let (object, cut) = parse(&text)?;
    // The string the answer was cut off in (by the token limit or the timeout), if any.
    let is_cut = |raw: &str| cut.as_deref() == Some(raw);
    let mut tally = Tally::default();

    // Caption: required unless the requester fixed it.
    let caption = if brief.fixed_caption().is_some() {
        template.caption.clone()
    } else {
        match field_text(&object, &["caption", "description", "style"])
            .and_then(|raw| clean_text(&raw, MAX_CAPTION_CHARS, is_cut(&raw)))
        {
            Some((caption, changed)) => {
                tally.used(SongField::Caption, changed);
                caption
            }
            None => return Err(Unusable::NoCaption),
        }
    };

    let title = match field_text(&object, &["title", "name"])
        .and_then(|raw| clean_title(&raw, is_cut(&raw)))
    {
        Some((title, changed)) => {
            tally.used(SongField::Title, changed);
            title
        }
        None => {
            tally.replaced(SongField::Title);
            template.title.clone()
        }
    };

    let bpm = match (brief.fixed_bpm(), object.get("bpm").and_then(read_bpm)) {
        (Some(_), _) => template.bpm,
        (None, Some((bpm, changed))) => {
            tally.used(SongField::Bpm, changed);
            bpm
        }
        (None, None) => {
            tally.replaced(SongField::Bpm);
            template.bpm
        }
    };

    let key = field_text(&object, &["keyscale", "key"]).and_then(|k| read_keyscale(&k));
    let keyscale = match (brief.fixed_keyscale(), key) {
        (Some(_), _) => template.keyscale.clone(),
        (None, Some(key)) => {
            tally.used(SongField::Keyscale, false);
            key
        }
        (None, None) => {
            tally.replaced(SongField::Keyscale);
            template.keyscale.clone()
        }
    };

    let ts = object
        .get("timesignature")
        .or_else(|| object.get("time_signature"))
        .and_then(read_timesignature);
    let timesignature = match (brief.fixed_timesignature(), ts) {
        (Some(_), _) => template.timesignature,
        (None, Some(ts)) => {
            tally.used(SongField::Timesignature, false);
            ts
        }
        (None, None) => {
            tally.replaced(SongField::Timesignature);
            template.timesignature
        }
    };

    let lyrics = if brief.fixed_lyrics().is_some() || brief.instrumental() {
        template.lyrics.clone()
    } else {
        match object
            .get("lyrics")
            .and_then(|v| read_lyrics(v, brief, &is_cut, cut.is_some()))
        {
            Some((lyrics, changed)) => {
                tally.used(SongField::Lyrics, changed);
                lyrics
            }
            None => {
                tally.replaced(SongField::Lyrics);
                template.lyrics.clone()
            }
        }
    };

    if !tally.used_any {
        return Err(Unusable::NothingUsable);
    }
    let mut description = SongDescription {
        title,
        caption,
        lyrics,
        bpm,
        keyscale,
        timesignature,
        language: brief.language(),
    };
    let findings = fix_flaws(&mut description, brief, template, &mut tally);
    Ok(Repaired {
        description,
        repaired: tally.repaired,
        findings,
    })
}

/// Replaces what [`quality::inspect`] finds: looping lyrics are thinned (or replaced when that is not
/// enough), a bad title comes from the first lyric line or the template, a bad caption from the template.
/// Returns the findings.
fn fix_flaws(
    d: &mut SongDescription,
    brief: &SongBrief,
    template: &SongDescription,
    tally: &mut Tally,
) -> Vec<Finding> {
    let instructions = Instructions::for_brief(brief);
    let findings = quality::inspect(d, brief, &instructions);
    let flawed = |field| findings.iter().any(|f| f.field == field);
    let mut lyrics_replaced = false;
    if flawed(SongField::Lyrics) {
        let repetitive_only = findings
            .iter()
            .filter(|f| f.field == SongField::Lyrics)
            .all(|f| f.flaw == Flaw::Repetitive);
        let thinned = quality::thin_repeats(&d.lyrics);
        let candidate = SongDescription {
            lyrics: thinned.clone(),
            ..d.clone()
        };
        let thinned_ok = repetitive_only
            && brief.lyrics_plan().check(&thinned).is_ok()
            && !quality::inspect(&candidate, brief, &instructions)
                .iter()
                .any(|f| f.field == SongField::Lyrics);
        if thinned_ok {
            d.lyrics = thinned;
        } else {
            d.lyrics = template.lyrics.clone();
            lyrics_replaced = true;
        }
        tally.replaced(SongField::Lyrics);
    }
    if flawed(SongField::Title) {
        let from_lyrics = (!lyrics_replaced)
            .then(|| lyrics::title_from_lyrics(&d.lyrics))
            .flatten()
            .filter(|title| {
                let candidate = SongDescription {
                    title: title.clone(),
                    ..d.clone()
                };
                !quality::inspect(&candidate, brief, &instructions)
                    .iter()
                    .any(|f| f.field == SongField::Title)
            });
        d.title = from_lyrics.unwrap_or_else(|| template.title.clone());
        tally.replaced(SongField::Title);
    }
    if flawed(SongField::Caption) {
        let soundless_only = findings
            .iter()
            .filter(|f| f.field == SongField::Caption)
            .all(|f| f.flaw == Flaw::Soundless);
        d.caption = if soundless_only {
            // The model's words stay; the template says what the track sounds like.
            quality::add_sound(&d.caption, &template.caption, MAX_CAPTION_CHARS)
        } else {
            template.caption.clone()
        };
        tally.replaced(SongField::Caption);
    }
    if !findings.is_empty() {
        tracing::debug!(
            seed = brief.seed,
            findings = ?findings.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "the LLM's answer had flaws; those fields were replaced"
        );
    }
    findings
}

/// Which fields of an answer were used and which had to be repaired or replaced.
#[derive(Default)]
struct Tally {
    repaired: Vec<SongField>,
    used_any: bool,
}

impl Tally {
    /// The answer's value was used; `changed` when it had to be repaired first.
    fn used(&mut self, field: SongField, changed: bool) {
        self.used_any = true;
        if changed {
            self.repaired.push(field);
        }
    }

    /// The answer's value was missing or beyond repair; the template's was used.
    fn replaced(&mut self, field: SongField) {
        if !self.repaired.contains(&field) {
            self.repaired.push(field);
        }
    }
}

/// The JSON object in `text`, strictly parsed when possible, else read leniently; and the string the text
/// was cut off in, if it was.
fn parse(text: &str) -> Result<(Map<String, Value>, Option<String>), Unusable> {
    let start = text.find('{').ok_or(Unusable::NoObject)?;
    if let Some(end) = text.rfind('}').filter(|end| *end > start)
        && let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&text[start..=end])
    {
        return Ok((map, None));
    }
    match lenient_json::parse_object(text) {
        Some(lenient_json::Lenient {
            value: Value::Object(map),
            cut,
            ..
        }) => Ok((map, cut)),
        _ => Err(Unusable::NoObject),
    }
}

/// The first of `names` holding a string (or a number, as text).
fn field_text(object: &Map<String, Value>, names: &[&str]) -> Option<String> {
    names.iter().find_map(|name| match object.get(*name)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

/// Removes control characters (newlines too unless `keep_newlines`; tabs become spaces) and U+FFFD, and
/// normalises line ends. Used for requester-fixed text, which is otherwise taken as given.
pub(crate) fn strip_control(text: &str, keep_newlines: bool) -> String {
    let text = text.replace("\r\n", "\n");
    let cleaned: String = text
        .chars()
        .filter_map(|c| match c {
            '\n' if keep_newlines => Some('\n'),
            '\t' | '\n' | '\r' => Some(' '),
            '\u{FFFD}' => None,
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect();
    cleaned.trim().to_string()
}

/// One line of text: control characters as spaces, no U+FFFD, whitespace collapsed, cut at a word to `max`
/// characters; when the text was cut off mid-answer, the last (possibly partial) word goes. `None` without
/// at least three letters or digits. The flag says whether anything changed.
fn clean_text(raw: &str, max: usize, cut_off: bool) -> Option<(String, bool)> {
    let spaced: String = raw
        .chars()
        .filter(|c| *c != '\u{FFFD}')
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut text = spaced.split_whitespace().collect::<Vec<_>>().join(" ");
    if cut_off && let Some(i) = text.rfind(' ') {
        text.truncate(i);
    }
    let text = trim_edges(&lyrics::truncate_words(&text, max)).to_string();
    if text.chars().filter(|c| c.is_alphanumeric()).count() < 3 {
        return None;
    }
    let changed = text != raw;
    Some((text, changed))
}

/// `text` without the punctuation a sentence does not start or end with (`, : ; - _ / \\ [ { < |`), nor
/// leading closing marks (`) ] } ! ? .`).
fn trim_edges(text: &str) -> &str {
    const NEVER_AT_EDGES: &[char] = &[',', ':', ';', '-', '_', '/', '\\', '[', '{', '<', '|', ' '];
    text.trim_start_matches(|c: char| {
        NEVER_AT_EDGES.contains(&c) || matches!(c, ')' | ']' | '}' | '!' | '?' | '.')
    })
    .trim_end_matches(NEVER_AT_EDGES)
}

/// A title: one line, no surrounding quotes, at most [`MAX_TITLE_CHARS`], with a letter or digit in it.
/// A title the answer was cut off in loses its last (partial) word.
fn clean_title(raw: &str, cut_off: bool) -> Option<(String, bool)> {
    let (text, _) = clean_text(raw, MAX_TITLE_CHARS, cut_off).or_else(|| {
        if cut_off {
            return None;
        }
        // Short titles ("Go", "Z") are fine; clean_text wants three letters for captions.
        let t = lyrics::clean_line(raw);
        t.chars().any(char::is_alphanumeric).then_some((t, true))
    })?;
    let text = text
        .trim_matches(|c: char| {
            matches!(c, '"' | '\'' | '“' | '”' | '«' | '»') || c.is_whitespace()
        })
        .to_string();
    if !text.chars().any(char::is_alphanumeric) {
        return None;
    }
    let text = lyrics::truncate_words(&text, MAX_TITLE_CHARS);
    let changed = text != raw;
    Some((text, changed))
}

/// A tempo from a number or text like `"96 bpm"`, rounded and clamped to 30–300; the flag says whether it
/// had to be changed.
fn read_bpm(value: &Value) -> Option<(u16, bool)> {
    let (raw, from_text) = match value {
        Value::Number(n) => (n.as_f64()?, false),
        Value::String(s) => {
            let digits: String = s
                .trim()
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            (digits.parse::<f64>().ok()?, true)
        }
        _ => return None,
    };
    if !raw.is_finite() {
        return None;
    }
    let rounded = raw.round().clamp(30.0, 300.0);
    // Clamped to 30..=300 above, so the cast is exact.
    let bpm = rounded as u16;
    Some((
        bpm,
        from_text || (raw - f64::from(bpm)).abs() > f64::EPSILON,
    ))
}

/// A key in ACE-Step's spelling from `C major`, `f# MINOR`, `Am`, `Bb`, `C#m`, `D-minor`, `E min`.
pub(crate) fn read_keyscale(raw: &str) -> Option<String> {
    let text = raw.trim().replace(['-', '_'], " ");
    let text = text.replace('♯', "#").replace('♭', "b");
    if let Some(key) = normalize_keyscale(&text) {
        return Some(key);
    }
    let compact: String = text.split_whitespace().collect::<Vec<_>>().join("");
    let mut chars = compact.chars();
    let letter = chars.next()?.to_ascii_uppercase();
    if !('A'..='G').contains(&letter) {
        return None;
    }
    let rest: String = chars.collect();
    // No mode word starts with "b", so a "b" right after the letter is a flat.
    let (accidental, mode) = if let Some(mode) = rest.strip_prefix('#') {
        ("#", mode)
    } else if let Some(mode) = rest.strip_prefix('b') {
        ("b", mode)
    } else {
        ("", rest.as_str())
    };
    let mode = match mode.to_ascii_lowercase().as_str() {
        "" | "maj" | "major" | "dur" => "major",
        "m" | "min" | "minor" | "moll" => "minor",
        _ => return None,
    };
    normalize_keyscale(&format!("{letter}{accidental} {mode}"))
}

/// A time signature: 2, 3, 4 or 6, from a number or text like `3/4` or `6/8`.
fn read_timesignature(value: &Value) -> Option<u8> {
    let beats = match value {
        Value::Number(n) => n.as_u64()?,
        Value::String(s) => {
            let head = s.trim().split('/').next()?.trim();
            head.parse::<u64>().ok()?
        }
        _ => return None,
    };
    let beats = u8::try_from(beats).ok()?;
    TIME_SIGNATURES.contains(&beats).then_some(beats)
}

/// Lyrics from the schema's array of `{section, lines}` objects or from plain text; tagged, cleaned and
/// fitted to the brief's duration. Lyrics text the answer was cut off in loses its last (partial) line;
/// a partial line in the array form was already left out by the lenient reader (`answer_cut` says the
/// answer was cut somewhere, which for the array form, the last field, means in the lyrics).
fn read_lyrics(
    value: &Value,
    brief: &SongBrief,
    is_cut: &dyn Fn(&str) -> bool,
    answer_cut: bool,
) -> Option<(String, bool)> {
    let plan = brief.lyrics_plan();
    let (sections, changed) = match value {
        Value::String(text) => {
            let (mut sections, changed) = lyrics::sections_from_text(text, plan.target_lines);
            if is_cut(text)
                && let Some(last) = sections.last_mut()
            {
                last.lines.pop();
            }
            (sections, changed || is_cut(text))
        }
        Value::Array(items) => {
            let (sections, changed) = sections_from_items(items, plan.target_lines);
            (sections, changed || answer_cut)
        }
        _ => return None,
    };
    match lyrics::fit_to_plan(sections, &plan) {
        Ok((fitted, cut)) => Some((lyrics::render(&fitted), changed || cut)),
        Err(why) => {
            tracing::debug!(%why, "LLM lyrics do not fit the song, using template lyrics");
            None
        }
    }
}

/// Sections from the schema's array form; tolerates strings in place of objects and `lines` given as text.
fn sections_from_items(items: &[Value], lines_per_section: usize) -> (Vec<Section>, bool) {
    let mut sections = Vec::new();
    let mut changed = false;
    for item in items {
        match item {
            Value::Object(obj) => {
                let name = field_text(obj, &["section", "tag", "name", "type"]).unwrap_or_default();
                let tag = lyrics::normalize_tag(&name).unwrap_or_else(|| {
                    changed = true;
                    "verse"
                });
                let raw_lines: Vec<String> = match obj.get("lines").or_else(|| obj.get("text")) {
                    Some(Value::Array(lines)) => lines
                        .iter()
                        .filter_map(|l| l.as_str())
                        .flat_map(|l| l.split('\n'))
                        .map(str::to_string)
                        .collect(),
                    Some(Value::String(text)) => text.split('\n').map(str::to_string).collect(),
                    _ => Vec::new(),
                };
                let mut lines = Vec::new();
                for raw in raw_lines {
                    let line = lyrics::clean_line(&raw);
                    if line != raw {
                        changed = true;
                    }
                    if line.chars().any(char::is_alphanumeric) {
                        lines.push(line);
                    } else {
                        changed = true;
                    }
                }
                sections.push(Section { tag, lines });
            }
            Value::String(text) => {
                changed = true;
                let (more, _) = lyrics::sections_from_text(text, lines_per_section);
                sections.extend(more);
            }
            _ => changed = true,
        }
    }
    (sections, changed)
}

/// `title`, or when it equals a recent title (ignoring case), the first of `title II`, `title III`, … that
/// does not; the result stays within [`MAX_TITLE_CHARS`].
pub(crate) fn unique_title(title: &str, brief: &SongBrief) -> String {
    let title = title.trim();
    if !brief.is_recent_title(title) {
        return title.to_string();
    }
    const NUMERALS: [&str; 12] = [
        "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII", "XIII",
    ];
    let base = |suffix: &str| {
        let room = MAX_TITLE_CHARS.saturating_sub(suffix.chars().count() + 1);
        let base: String = title.chars().take(room).collect();
        format!("{} {suffix}", base.trim_end())
    };
    for numeral in NUMERALS {
        let candidate = base(numeral);
        if !brief.is_recent_title(&candidate) {
            return candidate;
        }
    }
    // More recent titles than numerals cannot happen with the job's cap of 50 titles unless they were
    // chosen to collide; the seed makes a suffix nobody else has.
    base(&format!("#{:04x}", brief.seed & 0xffff))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_in_many_spellings_are_read() {
        for (raw, want) in [
            ("C major", "C major"),
            ("f# MINOR", "F# minor"),
            ("Am", "A minor"),
            ("C#m", "C# minor"),
            ("Bb", "Bb major"),
            ("Bbm", "Bb minor"),
            ("b", "B major"),
            ("bm", "B minor"),
            ("D-minor", "D minor"),
            ("E min", "E minor"),
            ("G♭ major", "Gb major"),
        ] {
            assert_eq!(read_keyscale(raw).as_deref(), Some(want), "{raw}");
        }
        for raw in ["H major", "major", "", "C lydian", "Cb major"] {
            assert_eq!(read_keyscale(raw), None, "{raw}");
        }
    }

    #[test]
    fn tempo_and_time_signature_are_read_and_clamped() {
        assert_eq!(read_bpm(&json!(96)), Some((96, false)));
        assert_eq!(read_bpm(&json!(96.4)), Some((96, true)));
        assert_eq!(read_bpm(&json!("120 bpm")), Some((120, true)));
        assert_eq!(read_bpm(&json!(1000)), Some((300, true)));
        assert_eq!(read_bpm(&json!(-5)), Some((30, true)));
        assert_eq!(read_bpm(&json!("fast")), None);
        assert_eq!(read_timesignature(&json!(3)), Some(3));
        assert_eq!(read_timesignature(&json!("6/8")), Some(6));
        assert_eq!(read_timesignature(&json!("4/4")), Some(4));
        assert_eq!(read_timesignature(&json!(5)), None);
        assert_eq!(read_timesignature(&json!(300)), None);
    }

    #[test]
    fn stray_punctuation_leaves_the_edges() {
        assert_eq!(trim_edges(", key br, "), "key br");
        assert_eq!(trim_edges(":c gui]"), "c gui]");
        assert_eq!(trim_edges("(Don't) Stop!"), "(Don't) Stop!");
        assert_eq!(trim_edges("...Baby One More Time"), "Baby One More Time");
    }

    #[test]
    fn titles_lose_quotes_and_control_characters() {
        assert_eq!(
            clean_title("  \"Neon\u{7}  Rain\" ", false),
            Some(("Neon Rain".to_string(), true))
        );
        assert_eq!(clean_title("Go", false), Some(("Go".to_string(), false)));
        assert_eq!(clean_title("\"...\"", false), None);
        assert_eq!(
            clean_title("Paper Mo", true),
            Some(("Paper".to_string(), true))
        );
        let (long, changed) = clean_title(&"la ".repeat(40), false).expect("has letters");
        assert!(changed && long.chars().count() <= MAX_TITLE_CHARS);
    }
}
