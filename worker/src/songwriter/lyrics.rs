//! Lyrics structure: section tags, how much text fits a duration, and turning loose text into tagged
//! sections.

use std::fmt::Write as _;

/// The lyrics of a song without vocals, exactly as ACE-Step expects them.
pub const INSTRUMENTAL: &str = "[Instrumental]";

/// Section tags a description may use, as written inside the brackets.
pub const SECTION_TAGS: [&str; 8] = [
    "intro",
    "verse",
    "pre-chorus",
    "chorus",
    "bridge",
    "hook",
    "interlude",
    "outro",
];

/// Sections that may be empty (played without words).
const WORDLESS_TAGS: [&str; 3] = ["intro", "interlude", "outro"];

/// The longest lyric line, in characters.
pub const MAX_LINE_CHARS: usize = 80;

/// How many sections and lines the lyrics of a song of a given length should have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LyricsPlan {
    /// Sections to aim for.
    pub target_sections: usize,
    /// Fewest sections accepted.
    pub min_sections: usize,
    /// Most sections accepted; more are cut.
    pub max_sections: usize,
    /// Lines per section to aim for.
    pub target_lines: usize,
    /// Most lines per section; more are cut.
    pub max_lines: usize,
}

impl LyricsPlan {
    /// About one section per 20 seconds (2 to 8 sections), four lines each (three for short clips).
    pub fn for_duration(duration_s: f32) -> Self {
        let d = if duration_s.is_finite() {
            duration_s.max(0.0)
        } else {
            60.0
        };
        // Bounded to 2..=8 before the cast, so the conversion is exact.
        let target_sections = (d / 20.0).round().clamp(2.0, 8.0) as usize;
        let short = d < 40.0;
        Self {
            target_sections,
            min_sections: if short { 1 } else { target_sections - 1 },
            max_sections: target_sections + 1,
            target_lines: if short { 3 } else { 4 },
            max_lines: if short { 4 } else { 6 },
        }
    }

    /// The section sequence the template writer (and the prompt) uses for this plan.
    pub fn sequence(&self) -> &'static [&'static str] {
        match self.target_sections {
            0..=2 => &["verse", "chorus"],
            3 => &["verse", "chorus", "outro"],
            4 => &["verse", "chorus", "verse", "chorus"],
            5 => &["verse", "chorus", "verse", "chorus", "outro"],
            6 => &["intro", "verse", "chorus", "verse", "chorus", "outro"],
            7 => &[
                "intro", "verse", "chorus", "verse", "chorus", "bridge", "chorus",
            ],
            _ => &[
                "intro",
                "verse",
                "pre-chorus",
                "chorus",
                "verse",
                "chorus",
                "bridge",
                "outro",
            ],
        }
    }

    /// Checks finished lyrics against the plan: section tags from [`SECTION_TAGS`], the first line a tag,
    /// a section count within bounds, no sung section empty or longer than the limit, no line over
    /// [`MAX_LINE_CHARS`], no control characters but newlines.
    pub fn check(&self, lyrics: &str) -> Result<(), String> {
        if lyrics.chars().any(|c| c.is_control() && c != '\n') {
            return Err("contains control characters".into());
        }
        let mut sections: Vec<(&str, usize)> = Vec::new();
        for line in lyrics.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(tag) = bracketed(line) {
                if !SECTION_TAGS.contains(&tag) {
                    return Err(format!("unknown section tag [{tag}]"));
                }
                sections.push((tag, 0));
            } else {
                let Some(section) = sections.last_mut() else {
                    return Err("does not start with a section tag like [verse]".into());
                };
                if line.chars().count() > MAX_LINE_CHARS {
                    return Err(format!("a line is longer than {MAX_LINE_CHARS} characters"));
                }
                section.1 += 1;
            }
        }
        if !(self.min_sections..=self.max_sections).contains(&sections.len()) {
            return Err(format!(
                "has {} sections, expected {} to {}",
                sections.len(),
                self.min_sections,
                self.max_sections
            ));
        }
        for (tag, lines) in sections {
            if lines > self.max_lines {
                return Err(format!(
                    "a [{tag}] has {lines} lines, at most {}",
                    self.max_lines
                ));
            }
            if lines == 0 && !WORDLESS_TAGS.contains(&tag) {
                return Err(format!("a [{tag}] has no lines"));
            }
        }
        Ok(())
    }
}

/// One tagged section of lyrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Section {
    /// One of [`SECTION_TAGS`].
    pub tag: &'static str,
    /// The sung lines, cleaned.
    pub lines: Vec<String>,
}

/// Renders sections as ACE-Step lyrics: a `[tag]` line, the lines, a blank line between sections.
pub(crate) fn render(sections: &[Section]) -> String {
    let mut out = String::new();
    for (i, section) in sections.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = writeln!(out, "[{}]", section.tag);
        for line in &section.lines {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.trim_end().to_string()
}

/// The text inside `[...]` when the whole line is one bracketed tag, normalised; `Some("")`-like garbage
/// becomes `None`. Unknown tags are returned as written (lowercase) so callers can report them.
fn bracketed(line: &str) -> Option<&str> {
    line.strip_prefix('[')?.strip_suffix(']').map(str::trim)
}

/// Maps a section name as a model or a person writes it (`Verse 2`, `PreChorus`, `Refrain`) to one of
/// [`SECTION_TAGS`].
pub(crate) fn normalize_tag(raw: &str) -> Option<&'static str> {
    let lower = raw.trim().to_lowercase();
    let words: String = lower
        .chars()
        .map(|c| if c.is_alphabetic() { c } else { ' ' })
        .collect();
    let key = words.split_whitespace().collect::<Vec<_>>().join("");
    let tag = match key.as_str() {
        "intro" | "opening" => "intro",
        "verse" => "verse",
        "prechorus" | "build" | "buildup" | "lift" => "pre-chorus",
        "chorus" | "refrain" => "chorus",
        "bridge" | "middleeight" => "bridge",
        "hook" | "postchorus" => "hook",
        "interlude" | "break" | "instrumental" | "instrumentalbreak" | "solo" => "interlude",
        "outro" | "coda" | "ending" | "end" | "finale" => "outro",
        _ => return None,
    };
    Some(tag)
}

/// Cleans one lyric line: control characters and brackets become spaces (a bracket would read as a section
/// tag), replacement characters go, whitespace collapses, and the line is cut to [`MAX_LINE_CHARS`] at a
/// word boundary.
pub(crate) fn clean_line(raw: &str) -> String {
    let spaced: String = raw
        .chars()
        .filter(|c| *c != '\u{FFFD}')
        .map(|c| {
            if c.is_control() || matches!(c, '[' | ']' | '{' | '}') {
                ' '
            } else {
                c
            }
        })
        .collect();
    let collapsed = spaced.split_whitespace().collect::<Vec<_>>().join(" ");
    truncate_words(&collapsed, MAX_LINE_CHARS)
}

/// Cuts `text` to at most `max` characters, at the last space when there is one in the second half.
pub(crate) fn truncate_words(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max).collect();
    match cut.rfind(' ') {
        Some(i) if cut[..i].chars().count() >= max / 2 => cut[..i].trim_end().to_string(),
        _ => cut.trim_end().to_string(),
    }
}

/// Splits loose lyrics text into sections. Lines before the first tag go into a `[verse]`; unknown tags
/// become `[verse]`. Text without any tag is cut into `[verse]`/`[chorus]` sections of `lines_per_section`.
/// Returns the sections and whether anything had to be changed.
pub(crate) fn sections_from_text(text: &str, lines_per_section: usize) -> (Vec<Section>, bool) {
    let mut sections: Vec<Section> = Vec::new();
    let mut changed = false;
    let mut any_tag = false;
    for raw in text.lines() {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            continue;
        }
        if let Some(name) = bracketed(trimmed) {
            any_tag = true;
            let tag = normalize_tag(name).unwrap_or_else(|| {
                changed = true;
                "verse"
            });
            if SECTION_TAGS.contains(&name) {
                // Written exactly as we would.
            } else {
                changed = true;
            }
            sections.push(Section {
                tag,
                lines: Vec::new(),
            });
            continue;
        }
        let line = clean_line(trimmed);
        if line != trimmed {
            changed = true;
        }
        if line.chars().any(char::is_alphanumeric) {
            if sections.is_empty() {
                changed = true;
                sections.push(Section {
                    tag: "verse",
                    lines: Vec::new(),
                });
            }
            if let Some(last) = sections.last_mut() {
                last.lines.push(line);
            }
        } else {
            changed = true;
        }
    }
    if !any_tag && !sections.is_empty() {
        let lines: Vec<String> = sections.drain(..).flat_map(|s| s.lines).collect();
        for (i, chunk) in lines.chunks(lines_per_section.max(1)).enumerate() {
            sections.push(Section {
                tag: if i % 2 == 0 { "verse" } else { "chorus" },
                lines: chunk.to_vec(),
            });
        }
    }
    (sections, changed)
}

/// Fits sections to the plan: drops sung sections without lines, cuts extra lines and extra sections.
/// Returns the fitted sections and whether anything was cut, or why they cannot be used (too few
/// sections).
pub(crate) fn fit_to_plan(
    mut sections: Vec<Section>,
    plan: &LyricsPlan,
) -> Result<(Vec<Section>, bool), String> {
    let before = sections.clone();
    sections.retain(|s| !s.lines.is_empty() || WORDLESS_TAGS.contains(&s.tag));
    // Wordless sections only pad: drop them first when there are too many sections.
    while sections.len() > plan.max_sections {
        match sections
            .iter()
            .rposition(|s| s.lines.is_empty() && WORDLESS_TAGS.contains(&s.tag))
        {
            Some(i) => {
                sections.remove(i);
            }
            None => sections.truncate(plan.max_sections),
        }
    }
    for section in &mut sections {
        section.lines.truncate(plan.max_lines);
    }
    let sung = sections.iter().filter(|s| !s.lines.is_empty()).count();
    if sung == 0 || sections.len() < plan.min_sections {
        return Err(format!(
            "{} sections with words, the song needs at least {}",
            sung, plan.min_sections
        ));
    }
    let changed = sections != before;
    Ok((sections, changed))
}

/// A title made from the first lyric line (its first five words), when that line has letters in it.
pub(crate) fn title_from_lyrics(lyrics: &str) -> Option<String> {
    let line = lyrics
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && bracketed(l).is_none())?;
    let line = clean_line(line);
    let words: Vec<&str> = line.split_whitespace().take(5).collect();
    let title = words
        .join(" ")
        .trim_matches(|c: char| !c.is_alphanumeric())
        .to_string();
    if title.chars().filter(|c| c.is_alphabetic()).count() < 2 {
        return None;
    }
    let mut chars = title.chars();
    let first = chars.next()?;
    Some(first.to_uppercase().chain(chars).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longer_songs_get_more_sections() {
        let short = LyricsPlan::for_duration(30.0);
        let minute = LyricsPlan::for_duration(60.0);
        let long = LyricsPlan::for_duration(240.0);
        assert_eq!(short.target_sections, 2);
        assert_eq!(minute.target_sections, 3);
        assert_eq!(long.target_sections, 8);
        assert!(short.max_lines < long.max_lines);
        for d in [5.12, 20.0, 45.0, 90.0, 150.0, 600.0] {
            let plan = LyricsPlan::for_duration(d);
            assert!(plan.min_sections >= 1 && plan.min_sections <= plan.target_sections);
            assert!(plan.target_sections <= plan.max_sections);
            assert!((plan.min_sections..=plan.max_sections).contains(&plan.sequence().len()));
        }
    }

    #[test]
    fn tags_are_normalised() {
        assert_eq!(normalize_tag("Verse 2"), Some("verse"));
        assert_eq!(normalize_tag("PRE-CHORUS"), Some("pre-chorus"));
        assert_eq!(normalize_tag("pre chorus"), Some("pre-chorus"));
        assert_eq!(normalize_tag("Refrain"), Some("chorus"));
        assert_eq!(normalize_tag("guitar solo"), None);
        assert_eq!(normalize_tag("solo"), Some("interlude"));
    }

    #[test]
    fn check_accepts_tagged_lyrics_and_names_what_is_wrong() {
        let plan = LyricsPlan::for_duration(60.0);
        let good = "[verse]\na\nb\n\n[chorus]\nc\nd\n\n[outro]";
        assert_eq!(plan.check(good), Ok(()));
        let long_line = format!("[verse]\n{}\n[chorus]\nb", "x".repeat(81));
        for (bad, says) in [
            ("a\nb", "section tag"),
            ("[verse]\na", "sections"),
            ("[rap]\na\n[chorus]\nb", "[rap]"),
            ("[verse]\na\x07\n[chorus]\nb", "control"),
            (long_line.as_str(), "longer"),
            ("[verse]\n[chorus]\nb", "no lines"),
        ] {
            let why = plan.check(bad).expect_err(bad);
            assert!(why.contains(says), "{bad:?}: {why}");
        }
    }

    #[test]
    fn loose_text_becomes_sections() {
        let (sections, changed) = sections_from_text("one\ntwo\nthree\nfour\nfive", 2);
        assert!(changed);
        assert_eq!(sections.len(), 3);
        assert_eq!(sections[0].tag, "verse");
        assert_eq!(sections[1].tag, "chorus");
        let (sections, changed) = sections_from_text("[verse]\nhello there\n[chorus]\nsing", 4);
        assert!(!changed);
        assert_eq!(render(&sections), "[verse]\nhello there\n\n[chorus]\nsing");
        let (sections, changed) = sections_from_text("[Verse 1]\nhi [x]\n[Chorus]\nyo", 4);
        assert!(changed);
        assert_eq!(render(&sections), "[verse]\nhi x\n\n[chorus]\nyo");
    }

    #[test]
    fn fitting_cuts_extra_and_refuses_too_little() {
        let plan = LyricsPlan::for_duration(60.0);
        let many: Vec<Section> = (0..10)
            .map(|_| Section {
                tag: "verse",
                lines: vec!["la".into(); 9],
            })
            .collect();
        let (fitted, changed) = fit_to_plan(many, &plan).expect("fits");
        assert!(changed);
        assert_eq!(fitted.len(), plan.max_sections);
        assert!(fitted.iter().all(|s| s.lines.len() == plan.max_lines));
        let one = vec![Section {
            tag: "verse",
            lines: vec!["la".into()],
        }];
        assert!(fit_to_plan(one, &plan).is_err());
    }

    #[test]
    fn lines_are_cleaned_and_cut_at_words() {
        assert_eq!(clean_line("  a\tb\u{FFFD} [c]  "), "a b c");
        let long = "word ".repeat(30);
        let cut = clean_line(&long);
        assert!(cut.chars().count() <= MAX_LINE_CHARS && cut.ends_with("word"));
    }

    #[test]
    fn titles_come_from_the_first_sung_line() {
        assert_eq!(
            title_from_lyrics("[verse]\nwalking home in the rain tonight\n").as_deref(),
            Some("Walking home in the rain")
        );
        assert_eq!(title_from_lyrics("[verse]\n...\n"), None);
    }
}
