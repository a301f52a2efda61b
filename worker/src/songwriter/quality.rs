//! What a real language model gets wrong that parsing cannot see.
//!
//! A small instruct model answers in valid JSON (the grammar sees to that) and still writes nonsense a
//! listener would notice: the prompt's own instructions as a title ("A short, new song title"), a caption
//! that is the title again, a line sung thirty times, a phrase looping inside a line, a title that is only
//! the genre's name. [`inspect`] finds these per field; the repair step replaces what it finds, so no song
//! is published with instruction text in it.

use std::collections::{HashMap, HashSet};
use std::fmt;

use super::repair::SongField;
use super::{SongBrief, SongDescription};

/// How many words in a row, copied from the instructions, make an echo.
const ECHO_WORDS: usize = 4;
/// A lyric line (ignoring case and punctuation) may be sung this many times; more is a loop.
pub const MAX_LINE_REPEATS: usize = 3;
/// A phrase of 1 to 4 words repeated back to back this many times is a loop ("I am eet, I am eet, …").
const MAX_BACK_TO_BACK: usize = 4;
/// One-word chants ("la la la", "na na na") may run a little longer.
const MAX_BACK_TO_BACK_WORD: usize = 8;
/// A title longer than this many words is a lyric line.
pub const MAX_TITLE_WORDS: usize = 8;
/// Words that say what a track sounds like: instruments, voices, production, rhythm.
const SOUND_WORDS: &[&str] = &[
    "accordion",
    "acoustic",
    "analog",
    "arpeggios",
    "bass",
    "bassline",
    "beat",
    "beats",
    "bells",
    "banjo",
    "brass",
    "cello",
    "choir",
    "chords",
    "claps",
    "drum",
    "drums",
    "electric",
    "electronic",
    "falsetto",
    "fiddle",
    "flute",
    "groove",
    "guitar",
    "guitars",
    "harmonica",
    "harmonies",
    "harp",
    "hats",
    "horns",
    "keys",
    "kick",
    "lofi",
    "mandolin",
    "marimba",
    "melody",
    "orchestra",
    "orchestral",
    "organ",
    "pads",
    "percussion",
    "piano",
    "rhodes",
    "rhythm",
    "riff",
    "riffs",
    "sax",
    "saxophone",
    "snare",
    "strings",
    "synth",
    "synths",
    "tempo",
    "trumpet",
    "ukulele",
    "verb",
    "reverb",
    "vinyl",
    "violin",
    "vocal",
    "vocals",
    "voice",
    "whistle",
    "808",
    "rap",
    "rapped",
    "sung",
    "singer",
    "instrumental",
    "beatbox",
    "tape",
    "distorted",
    "plucked",
    "bowed",
    "sidechained",
    "supersaw",
];
/// A three-word phrase appearing this many times in a caption means the caption loops.
const MAX_CAPTION_PHRASE_REPEATS: usize = 3;

/// Words that make a title a placeholder rather than a title.
const PLACEHOLDER_TITLES: &[&str] = &[
    "title",
    "song title",
    "untitled",
    "new song",
    "a new song",
    "song",
    "the song",
    "my song",
    "caption",
    "lyrics",
];

/// What is wrong with a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flaw {
    /// Four or more words in a row copied from the instructions or the example.
    CopiedFromPrompt,
    /// A placeholder such as "Song Title" or a title with the word "title" in it.
    Placeholder,
    /// The caption says no more than the title.
    CaptionIsTitle,
    /// The title is only the genre's name.
    GenreOnlyTitle,
    /// A line or phrase repeated past what a song does.
    Repetitive,
    /// Mostly not words: numbers, timestamps, punctuation.
    NotWords,
    /// A title of more than [`MAX_TITLE_WORDS`] words (a lyric line, not a title).
    TooLong,
    /// A caption that names no instrument, voice or sound: ACE-Step needs those.
    Soundless,
    /// One of the station's recent titles again (the model copies them from the prompt), perhaps with a
    /// numeral added.
    RecentTitle,
}

impl Flaw {
    /// A short name for logs, notes and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Flaw::CopiedFromPrompt => "copied from the prompt",
            Flaw::Placeholder => "placeholder",
            Flaw::CaptionIsTitle => "caption is the title",
            Flaw::GenreOnlyTitle => "title is the genre",
            Flaw::Repetitive => "repetitive",
            Flaw::NotWords => "not words",
            Flaw::TooLong => "too long",
            Flaw::Soundless => "says nothing of the sound",
            Flaw::RecentTitle => "a recent title again",
        }
    }
}

impl fmt::Display for Flaw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A flaw in one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Finding {
    /// The field.
    pub field: SongField,
    /// What is wrong with it.
    pub flaw: Flaw,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.flaw)
    }
}

/// Lower-case words of letters and digits (any script), punctuation dropped.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The instructions a model might copy, as runs of [`ECHO_WORDS`] words; the station's own settings and
/// the listener's fixed caption or lyrics are left out (a caption may name its genre and theme, lyrics may
/// follow the listener's caption).
#[derive(Debug)]
pub struct Instructions {
    runs: HashSet<Vec<String>>,
}

impl Instructions {
    /// From the texts the model was shown that are not the station's settings.
    pub fn new<'a>(texts: impl IntoIterator<Item = &'a str>, brief: &SongBrief) -> Self {
        // The station's settings and what the listener wrote are theirs to repeat.
        let station: HashSet<String> = [
            brief.station.genre.as_str(),
            brief.station.theme.as_str(),
            brief.station.style.as_str(),
            brief.fixed_caption().unwrap_or_default(),
            brief.fixed_lyrics().unwrap_or_default(),
        ]
        .into_iter()
        .flat_map(words)
        .collect();
        let mut runs = HashSet::new();
        for text in texts {
            for run in words(text).windows(ECHO_WORDS) {
                // A run made only of the station's words is the station speaking, not the prompt.
                if !run.iter().all(|w| station.contains(w)) {
                    runs.insert(run.to_vec());
                }
            }
        }
        Self { runs }
    }

    /// Everything the song writer shows the model for `brief`: its instructions, the example, the request.
    pub fn for_brief(brief: &SongBrief) -> Self {
        let texts = super::prompt::instruction_texts(brief);
        Self::new(texts.iter().map(String::as_str), brief)
    }

    fn echoed_in(&self, text: &str) -> bool {
        words(text)
            .windows(ECHO_WORDS)
            .any(|run| self.runs.contains(run))
    }
}

/// Every flaw of `description`, against everything the song writer shows the model for `brief` (its
/// instructions, the example answer, the request).
pub fn findings(description: &SongDescription, brief: &SongBrief) -> Vec<Finding> {
    inspect(description, brief, &Instructions::for_brief(brief))
}

/// Every flaw of `description`'s title, caption and lyrics.
pub fn inspect(
    description: &SongDescription,
    brief: &SongBrief,
    instructions: &Instructions,
) -> Vec<Finding> {
    let mut found = Vec::new();
    let mut flag = |field, flaw| found.push(Finding { field, flaw });
    let title = words(&description.title);
    let caption = words(&description.caption);

    if instructions.echoed_in(&description.title) {
        flag(SongField::Title, Flaw::CopiedFromPrompt);
    } else if PLACEHOLDER_TITLES.contains(&title.join(" ").as_str())
        || title.iter().any(|w| w == "title")
    {
        flag(SongField::Title, Flaw::Placeholder);
    } else if is_recent(&title, brief) {
        flag(SongField::Title, Flaw::RecentTitle);
    } else if title.len() > MAX_TITLE_WORDS {
        flag(SongField::Title, Flaw::TooLong);
    } else {
        let genre: HashSet<String> = words(&brief.station.genre).into_iter().collect();
        if !title.is_empty() && title.iter().all(|w| genre.contains(w)) {
            flag(SongField::Title, Flaw::GenreOnlyTitle);
        }
    }

    if brief.fixed_caption().is_none() {
        // "drum and bass" names the genre, not the sound of this track.
        let genre_words: HashSet<String> = words(&brief.station.genre).into_iter().collect();
        if instructions.echoed_in(&description.caption) {
            flag(SongField::Caption, Flaw::CopiedFromPrompt);
        } else if !caption.is_empty()
            && (caption == title || caption.iter().all(|w| title.contains(w)))
        {
            flag(SongField::Caption, Flaw::CaptionIsTitle);
        } else if loops(&caption, MAX_CAPTION_PHRASE_REPEATS) {
            flag(SongField::Caption, Flaw::Repetitive);
        } else if caption.iter().any(|w| w == "title") {
            flag(SongField::Caption, Flaw::Placeholder);
        } else if !mostly_words(&description.caption) {
            flag(SongField::Caption, Flaw::NotWords);
        } else if !caption
            .iter()
            .any(|w| SOUND_WORDS.contains(&w.as_str()) && !genre_words.contains(w))
        {
            flag(SongField::Caption, Flaw::Soundless);
        }
    }

    if brief.fixed_lyrics().is_none() && !brief.instrumental() {
        let sung = sung_lines(&description.lyrics);
        if sung.iter().any(|line| instructions.echoed_in(line)) {
            flag(SongField::Lyrics, Flaw::CopiedFromPrompt);
        } else if is_repetitive(&sung) {
            flag(SongField::Lyrics, Flaw::Repetitive);
        }
    }
    found
}

/// Whether `title` (as words) is a recent title of the station, ignoring numerals added to tell them apart.
fn is_recent(title: &[String], brief: &SongBrief) -> bool {
    const NUMERALS: &[&str] = &[
        "i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x", "xi", "xii",
    ];
    let bare = |w: &[String]| -> Vec<String> {
        let mut w = w.to_vec();
        while w.len() > 1
            && w.last().is_some_and(|last| {
                NUMERALS.contains(&last.as_str()) || last.chars().all(|c| c.is_ascii_digit())
            })
        {
            w.pop();
        }
        w
    };
    let title = bare(title);
    brief
        .recent_titles
        .iter()
        .any(|recent| bare(&words(recent)) == title)
}

/// `caption` followed by what `template` (a caption of the same station from the template writer) says of
/// the sound: everything after its first comma (the template starts with the genre), within `max` characters.
pub fn add_sound(caption: &str, template: &str, max: usize) -> String {
    let sound = template.split_once(", ").map_or(template, |(_, rest)| rest);
    let joined = format!("{}, {sound}", caption.trim_end_matches([',', ' ', '.']));
    super::lyrics::truncate_words(&joined, max)
}

/// At least three words of letters, and more letters than anything else but spaces.
fn mostly_words(text: &str) -> bool {
    let lettered = words(text)
        .iter()
        .filter(|w| w.chars().any(char::is_alphabetic))
        .count();
    let letters = text.chars().filter(|c| c.is_alphabetic()).count();
    let others = text
        .chars()
        .filter(|c| !c.is_alphabetic() && !c.is_whitespace())
        .count();
    lettered >= 3 && letters > others * 2
}

/// The lyric lines that are sung (section tags left out).
fn sung_lines(lyrics: &str) -> Vec<&str> {
    lyrics
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !is_tag(l))
        .collect()
}

fn is_tag(line: &str) -> bool {
    line.starts_with('[') && line.ends_with(']')
}

/// A line sung more than [`MAX_LINE_REPEATS`] times, or a phrase looping back to back.
pub fn is_repetitive(lines: &[&str]) -> bool {
    let mut counts: HashMap<Vec<String>, usize> = HashMap::new();
    for line in lines {
        let w = words(line);
        if w.is_empty() {
            continue;
        }
        let n = counts.entry(w).or_default();
        *n += 1;
        if *n > MAX_LINE_REPEATS {
            return true;
        }
    }
    let all: Vec<String> = lines.iter().flat_map(|l| words(l)).collect();
    back_to_back(&all)
}

/// A phrase of 1 to 4 words repeated back to back past its limit.
fn back_to_back(words: &[String]) -> bool {
    for n in 1..=4 {
        let limit = if n == 1 {
            MAX_BACK_TO_BACK_WORD
        } else {
            MAX_BACK_TO_BACK
        };
        let mut start = 0;
        while start + n <= words.len() {
            let phrase = &words[start..start + n];
            let mut repeats = 1;
            while start + (repeats + 1) * n <= words.len()
                && &words[start + repeats * n..start + (repeats + 1) * n] == phrase
            {
                repeats += 1;
            }
            if repeats >= limit {
                return true;
            }
            start += 1;
        }
    }
    false
}

/// A three-word phrase appearing `limit` times or more, anywhere.
fn loops(words: &[String], limit: usize) -> bool {
    let mut counts: HashMap<&[String], usize> = HashMap::new();
    words.windows(3).any(|run| {
        let n = counts.entry(run).or_default();
        *n += 1;
        *n >= limit
    }) || back_to_back(words)
}

/// The lyrics with every line past its [`MAX_LINE_REPEATS`]th appearance removed, and sections left
/// empty by that removed too. The caller checks the result against the lyrics plan again.
pub fn thin_repeats(lyrics: &str) -> String {
    let mut counts: HashMap<Vec<String>, usize> = HashMap::new();
    let mut sections: Vec<(String, Vec<String>)> = Vec::new();
    for line in lyrics.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if is_tag(line) {
            sections.push((line.to_string(), Vec::new()));
            continue;
        }
        let n = counts.entry(words(line)).or_default();
        *n += 1;
        if *n <= MAX_LINE_REPEATS
            && let Some((_, lines)) = sections.last_mut()
        {
            lines.push(line.to_string());
        }
    }
    sections
        .into_iter()
        .filter(|(_, lines)| !lines.is_empty())
        .map(|(tag, lines)| format!("{tag}\n{}", lines.join("\n")))
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use radio_shared::job::{SongRequest, Station};

    fn brief() -> SongBrief {
        SongBrief {
            station: Station {
                genre: "synthwave".into(),
                theme: "neon city nights".into(),
                style: String::new(),
                language: "en".into(),
                instrumental: false,
            },
            request: SongRequest {
                duration_s: 60.0,
                ..SongRequest::default()
            },
            recent_titles: Vec::new(),
            seed: 1,
        }
    }

    fn song(title: &str, caption: &str, lyrics: &str) -> SongDescription {
        SongDescription {
            title: title.into(),
            caption: caption.into(),
            lyrics: lyrics.into(),
            bpm: 100,
            keyscale: "A minor".into(),
            timesignature: 4,
            language: "en".into(),
        }
    }

    const INSTRUCTIONS: &str = "title: a short, new song title (2 to 6 words). caption: one line for a \
        music generator describing the sound: genre, mood, instruments, vocal style, production.";

    fn flaws(d: &SongDescription) -> Vec<String> {
        let b = brief();
        inspect(d, &b, &Instructions::new([INSTRUCTIONS], &b))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    const GOOD_LYRICS: &str = "[verse]\nChrome rain on the boulevard\nWe drive until the morning\n\n[chorus]\nNeon hearts\nNeon hearts tonight";

    #[test]
    fn what_the_small_model_wrote_is_caught() {
        // Seen from SmolLM2-135M with the first prompt (issue 15).
        let d = song(
            "A Short, New Song Title (2 to 6 words)",
            "One line for a music generator describing the sound: genre, mood, instruments",
            "[verse]\nI am eet, I am eet, I am eet, I am eet, I am eet",
        );
        assert_eq!(
            flaws(&d),
            [
                "title: copied from the prompt",
                "caption: copied from the prompt",
                "lyrics: repetitive"
            ]
        );
        let looping = "[verse]\nI am a dragon.\nI am a dragon.\nI am a dragon.\nI am a dragon.";
        assert_eq!(
            flaws(&song("Dragon", "dark synthwave, analog bass", looping)),
            ["lyrics: repetitive"]
        );
        assert_eq!(
            flaws(&song("Night Drive", "Night Drive", GOOD_LYRICS)),
            ["caption: caption is the title"]
        );
        assert_eq!(
            flaws(&song("Synthwave", "retro synths, gated drums", GOOD_LYRICS)),
            ["title: title is the genre"]
        );
        assert_eq!(
            flaws(&song(
                "Song Title",
                "retro synths, gated drums",
                GOOD_LYRICS
            )),
            ["title: placeholder"]
        );
        assert_eq!(
            flaws(&song(
                "Chrome Rain",
                "synthwave, neon city nights",
                GOOD_LYRICS
            )),
            ["caption: says nothing of the sound"]
        );
        assert_eq!(
            flaws(&song(
                "You're the only one that makes me feel alive tonight",
                "synthwave, gated drums",
                GOOD_LYRICS
            )),
            ["title: too long"]
        );
        assert_eq!(
            add_sound(
                "synthwave, neon city nights.",
                "synthwave, dreamy, analog pads, gated drums",
                300
            ),
            "synthwave, neon city nights, dreamy, analog pads, gated drums"
        );
        assert_eq!(
            flaws(&song(
                "Chrome Rain",
                "12:12:33.24:15.49, 14:19:27, 18:05:23",
                GOOD_LYRICS
            )),
            ["caption: not words"]
        );
        assert_eq!(
            flaws(&song(
                "Chrome Rain",
                "Song title: Lollip, New Song",
                GOOD_LYRICS
            )),
            ["caption: placeholder"]
        );
        let caption =
            "lyrics language: English, lyrics language: English, lyrics language: English";
        assert_eq!(
            flaws(&song("Chrome Rain", caption, GOOD_LYRICS)),
            ["caption: repetitive"]
        );
    }

    #[test]
    fn a_good_song_and_the_station_s_own_words_pass() {
        let d = song(
            "Chrome Rain",
            "synthwave about neon city nights, analog pads, gated drums, breathy female vocals",
            "[verse]\nChrome rain on the boulevard\nWe drive until the morning\n\n[chorus]\nLa la la la\nNeon hearts tonight\nNeon hearts tonight\n\n[chorus]\nLa la la la\nNeon hearts tonight",
        );
        assert!(flaws(&d).is_empty(), "{:?}", flaws(&d));
    }

    #[test]
    fn lyrics_may_follow_the_listener_s_caption() {
        let mut b = brief();
        b.request.caption = Some("a song about my dog max who loves the beach".into());
        let lyrics = "[verse]\nMy dog Max who loves the beach\nRuns to meet the tide\n\n[chorus]\nMax, Max\nBy my side";
        let d = song("Max", "a song about my dog max who loves the beach", lyrics);
        assert!(findings(&d, &b).is_empty(), "{:?}", findings(&d, &b));
        // The request's own wording is still the prompt's.
        let copied = "[verse]\nLength 60 seconds lyrics language\nRuns to meet the tide";
        let d = song("Max", "x", copied);
        assert_eq!(
            findings(&d, &b)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["lyrics: copied from the prompt"]
        );
    }

    #[test]
    fn thinning_keeps_three_of_a_line_and_drops_emptied_sections() {
        let lyrics = "[verse]\nGo\nGo\nGo\nGo\nStay\n\n[chorus]\nGo";
        assert_eq!(thin_repeats(lyrics), "[verse]\nGo\nGo\nGo\nStay");
        assert!(!is_repetitive(&["a b", "a b", "a b"]));
        assert!(is_repetitive(&["a b", "a b", "a b", "A, b!"]));
    }
}
