//! The template writer: a valid, pleasant song description from word banks, deterministic from the seed.
//!
//! It is what the radio plays when no LLM is configured or the LLM fails, so it must work for any station.
//! The genre picks a family (tempo range, instruments, moods, vocal styles, how often it is in a minor
//! key); the theme is woven into the title and the lyrics. **The lyrics are always English**, whatever the
//! station's language; the description still carries the station's language code, so ACE-Step is told
//! the truth about the words it gets.

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::lyrics::{self, INSTRUMENTAL, Section};
use super::{Cancelled, WrittenSong};
use super::{
    MAX_CAPTION_CHARS, MAX_TITLE_CHARS, SongBrief, SongDescription, SongWriter, WriteStats,
};
use radio_shared::job::Writer;

/// The template writer. Stateless; see the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct TemplateSongWriter;

/// Mixed into the seed so the template writer's choices are not correlated with other users of the seed.
const SEED_SALT: u64 = 0x5EED_50A6_5A17_0001;

impl TemplateSongWriter {
    /// The description for `brief`: the same brief always gives the same description. Fixed fields are
    /// not applied here (the caller does), but the title already avoids the recent titles.
    pub fn describe(&self, brief: &SongBrief) -> SongDescription {
        let mut rng = ChaCha8Rng::seed_from_u64(brief.seed ^ SEED_SALT);
        let family = family_for(&brief.station.genre, &brief.station.style);
        let theme = Theme::new(&brief.station.theme);

        let title = (0..24)
            .map(|_| make_title(&mut rng, &theme))
            .find(|t| !brief.is_recent_title(t))
            .unwrap_or_else(|| make_title(&mut rng, &theme));

        let (lo, hi) = family.bpm;
        let bpm = rng.random_range(lo..=hi);
        let minor = rng.random_bool(family.minor_share);
        let keyscale = format!(
            "{} {}",
            pick(&mut rng, &KEY_NOTES),
            if minor { "minor" } else { "major" }
        );
        let timesignature = time_signature(&mut rng, brief, family);
        let caption = make_caption(&mut rng, brief, family);
        let lyrics = if brief.instrumental() {
            INSTRUMENTAL.to_string()
        } else {
            make_lyrics(&mut rng, brief, &theme, &title)
        };
        SongDescription {
            title,
            caption,
            lyrics,
            bpm,
            keyscale,
            timesignature,
            language: brief.language(),
        }
    }
}

impl SongWriter for TemplateSongWriter {
    fn write(
        &mut self,
        brief: &SongBrief,
        should_stop: &dyn Fn() -> bool,
    ) -> Result<WrittenSong, Cancelled> {
        if should_stop() {
            return Err(Cancelled);
        }
        let started = std::time::Instant::now();
        let description = super::finalize(self.describe(brief), brief);
        Ok(WrittenSong {
            description,
            writer: Writer::Template,
            note: None,
            stats: WriteStats {
                total_time: started.elapsed(),
                ..WriteStats::default()
            },
        })
    }
}

fn pick<'a, R: Rng>(rng: &mut R, items: &'a [&'a str]) -> &'a str {
    items.choose(rng).copied().unwrap_or("")
}

/// Notes as ACE-Step spells them (`normalize_keyscale` accepts all of these).
const KEY_NOTES: [&str; 12] = [
    "C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B",
];

/// A family of genres that share tempo, instruments and mood.
#[derive(Debug)]
struct Family {
    /// Words in a genre or style that select this family.
    keywords: &'static [&'static str],
    /// Tempo range.
    bpm: (u16, u16),
    /// Chance of a minor key.
    minor_share: f64,
    /// Instruments and sounds, three are picked.
    instruments: &'static [&'static str],
    /// Moods, two are picked.
    moods: &'static [&'static str],
    /// Vocal styles, one is picked for songs with lyrics.
    vocals: &'static [&'static str],
    /// Sometimes in 3/4 or 6/8 (ballads, folk, classical) rather than always in 4.
    lilting: bool,
}

const FAMILIES: &[Family] = &[
    Family {
        keywords: &[
            "lofi", "lo-fi", "chillhop", "hip hop", "hip-hop", "boom bap", "rap", "trap",
        ],
        bpm: (70, 95),
        minor_share: 0.6,
        instruments: &[
            "dusty vinyl drums",
            "warm rhodes piano",
            "mellow bass",
            "jazzy guitar chords",
            "tape hiss",
            "soft sidechained pads",
            "muted trumpet samples",
        ],
        moods: &["mellow", "nostalgic", "calm", "dreamy", "laid-back", "cozy"],
        vocals: &[
            "soft spoken-word vocals",
            "relaxed male rap vocals",
            "airy female vocals",
        ],
        lilting: false,
    },
    Family {
        keywords: &["metal", "metalcore", "doom", "thrash"],
        bpm: (90, 180),
        minor_share: 0.9,
        instruments: &[
            "heavy distorted guitars",
            "double kick drums",
            "growling bass",
            "crashing cymbals",
            "dark synth layers",
        ],
        moods: &["aggressive", "dark", "powerful", "intense", "epic"],
        vocals: &[
            "raw shouted male vocals",
            "powerful clean vocals",
            "harsh screamed vocals",
        ],
        lilting: false,
    },
    Family {
        keywords: &[
            "rock",
            "punk",
            "grunge",
            "indie",
            "alternative",
            "garage",
            "shoegaze",
        ],
        bpm: (95, 160),
        minor_share: 0.4,
        instruments: &[
            "crunchy electric guitars",
            "punchy live drums",
            "driving bass",
            "jangly guitar arpeggios",
            "hammond organ",
        ],
        moods: &["energetic", "raw", "anthemic", "restless", "bittersweet"],
        vocals: &[
            "gritty male vocals",
            "passionate female vocals",
            "shouted gang vocals",
        ],
        lilting: false,
    },
    Family {
        keywords: &[
            "house",
            "techno",
            "edm",
            "trance",
            "electro",
            "dance",
            "disco",
            "synthwave",
            "dubstep",
            "drum and bass",
            "dnb",
            "electronic",
        ],
        bpm: (110, 140),
        minor_share: 0.6,
        instruments: &[
            "four-on-the-floor kick",
            "pulsing analog synth bass",
            "shimmering arpeggios",
            "crisp hi-hats",
            "lush supersaw chords",
            "vocal chops",
        ],
        moods: &["euphoric", "hypnotic", "driving", "uplifting", "nocturnal"],
        vocals: &[
            "breathy female vocals",
            "processed male vocals",
            "soulful diva vocals",
        ],
        lilting: false,
    },
    Family {
        keywords: &["jazz", "swing", "bebop", "bossa", "big band", "blues"],
        bpm: (80, 160),
        minor_share: 0.4,
        instruments: &[
            "upright bass",
            "brushed drums",
            "smoky saxophone",
            "piano comping",
            "muted trumpet",
            "hollow-body guitar",
        ],
        moods: &["smoky", "elegant", "swinging", "late-night", "soulful"],
        vocals: &[
            "velvet female vocals",
            "crooning male vocals",
            "scat-tinged vocals",
        ],
        lilting: false,
    },
    Family {
        keywords: &["soul", "r&b", "rnb", "funk", "gospel", "neo soul"],
        bpm: (70, 115),
        minor_share: 0.4,
        instruments: &[
            "groovy bass guitar",
            "wah guitar",
            "warm electric piano",
            "tight snare",
            "horn stabs",
            "string pads",
        ],
        moods: &["groovy", "sensual", "warm", "uplifting", "smooth"],
        vocals: &[
            "soulful female vocals",
            "smooth falsetto vocals",
            "rich gospel harmonies",
        ],
        lilting: false,
    },
    Family {
        keywords: &[
            "folk",
            "country",
            "acoustic",
            "bluegrass",
            "americana",
            "singer-songwriter",
        ],
        bpm: (75, 125),
        minor_share: 0.3,
        instruments: &[
            "fingerpicked acoustic guitar",
            "banjo",
            "fiddle",
            "upright bass",
            "harmonica",
            "soft brushed percussion",
        ],
        moods: &["heartfelt", "rustic", "warm", "wistful", "hopeful"],
        vocals: &[
            "earnest male vocals",
            "gentle female vocals",
            "close two-part harmonies",
        ],
        lilting: true,
    },
    Family {
        keywords: &[
            "classical",
            "orchestral",
            "cinematic",
            "ambient",
            "piano",
            "soundtrack",
            "new age",
            "meditation",
        ],
        bpm: (60, 100),
        minor_share: 0.5,
        instruments: &[
            "sweeping strings",
            "solo piano",
            "french horns",
            "soft choir pads",
            "harp glissandos",
            "evolving ambient textures",
        ],
        moods: &["serene", "majestic", "contemplative", "tender", "vast"],
        vocals: &[
            "ethereal choir vocals",
            "soaring soprano vocals",
            "whispered vocals",
        ],
        lilting: true,
    },
    Family {
        keywords: &[
            "reggae",
            "dub",
            "ska",
            "latin",
            "salsa",
            "reggaeton",
            "afrobeat",
            "afrobeats",
            "cumbia",
            "dancehall",
        ],
        bpm: (85, 120),
        minor_share: 0.4,
        instruments: &[
            "offbeat guitar skank",
            "deep bass line",
            "hand percussion",
            "bright horns",
            "marimba",
            "syncopated drums",
        ],
        moods: &["sunny", "breezy", "rhythmic", "joyful", "laid-back"],
        vocals: &[
            "warm male vocals",
            "bright female vocals",
            "call-and-response vocals",
        ],
        lilting: false,
    },
];

/// Used when no family matches the genre.
const GENERAL: Family = Family {
    keywords: &[],
    bpm: (80, 128),
    minor_share: 0.45,
    instruments: &[
        "warm synth pads",
        "punchy drums",
        "melodic bass",
        "bright piano",
        "clean electric guitar",
        "subtle strings",
    ],
    moods: &["catchy", "warm", "uplifting", "dreamy", "bittersweet"],
    vocals: &[
        "clear female vocals",
        "smooth male vocals",
        "layered harmonies",
    ],
    lilting: false,
};

fn family_for(genre: &str, style: &str) -> &'static Family {
    let text = format!("{} {}", genre.to_lowercase(), style.to_lowercase());
    FAMILIES
        .iter()
        .find(|f| f.keywords.iter().any(|k| text.contains(k)))
        .unwrap_or(&GENERAL)
}

fn time_signature<R: Rng>(rng: &mut R, brief: &SongBrief, family: &Family) -> u8 {
    let text = format!("{} {}", brief.station.genre, brief.station.style).to_lowercase();
    if text.contains("waltz") || text.contains("3/4") {
        return 3;
    }
    if text.contains("6/8") || text.contains("shanty") {
        return 6;
    }
    match rng.random_range(0..10) {
        0 if family.lilting => 3,
        1 if family.lilting => 6,
        _ => 4,
    }
}

/// The theme's words, for titles and lyrics.
struct Theme {
    /// The theme as written, trimmed, safe to put in a line (no brackets or control characters).
    phrase: String,
    /// Its longest word, capitalised ("City"), or a stand-in when the theme is empty.
    keyword: String,
}

impl Theme {
    fn new(raw: &str) -> Self {
        let phrase = lyrics::clean_line(raw);
        let phrase = lyrics::truncate_words(&phrase, 40);
        let keyword = phrase
            .split(|c: char| !c.is_alphanumeric() && c != '\'')
            .filter(|w| w.chars().count() >= 3 && !STOPWORDS.contains(&w.to_lowercase().as_str()))
            .max_by_key(|w| w.chars().count())
            .map(capitalise)
            .unwrap_or_else(|| "Tonight".to_string());
        let phrase = if phrase.chars().any(char::is_alphanumeric) {
            phrase.to_lowercase()
        } else {
            "the night".to_string()
        };
        Self { phrase, keyword }
    }
}

const STOPWORDS: [&str; 16] = [
    "the", "and", "for", "with", "about", "from", "into", "over", "under", "your", "our", "their",
    "that", "this", "songs", "music",
];

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first
            .to_uppercase()
            .chain(chars.flat_map(char::to_lowercase))
            .collect(),
        None => String::new(),
    }
}

const ADJECTIVES: [&str; 24] = [
    "Neon", "Golden", "Silver", "Velvet", "Midnight", "Electric", "Paper", "Crystal", "Quiet",
    "Wild", "Faded", "Burning", "Hollow", "Gentle", "Endless", "Distant", "Broken", "Shining",
    "Lonely", "Secret", "Slow", "Scarlet", "Blue", "Northern",
];

const NOUNS: [&str; 24] = [
    "Rain",
    "Skyline",
    "Heartbeat",
    "Horizon",
    "Echoes",
    "Lanterns",
    "Tides",
    "Avenue",
    "Static",
    "Embers",
    "Satellites",
    "Harbor",
    "Daydream",
    "Signals",
    "Rivers",
    "Mirrors",
    "Window",
    "Highway",
    "Summer",
    "Shadows",
    "Fireflies",
    "Compass",
    "Letters",
    "Wildflowers",
];

fn make_title<R: Rng>(rng: &mut R, theme: &Theme) -> String {
    let adj = pick(rng, &ADJECTIVES);
    let noun = pick(rng, &NOUNS);
    let noun2 = pick(rng, &NOUNS);
    let title = match rng.random_range(0..6) {
        0 => format!("{adj} {noun}"),
        1 => format!("{} {noun}", theme.keyword),
        2 => format!("{adj} {}", theme.keyword),
        3 => format!("{noun} of {}", theme.keyword),
        4 => format!("Under the {adj} {noun}"),
        _ => format!("{noun} and {noun2}"),
    };
    lyrics::truncate_words(&title, MAX_TITLE_CHARS)
}

fn make_caption<R: Rng>(rng: &mut R, brief: &SongBrief, family: &Family) -> String {
    let genre = lyrics::clean_line(&brief.station.genre).to_lowercase();
    let genre = if genre.is_empty() {
        "song".to_string()
    } else {
        genre
    };
    let mut moods: Vec<&str> = family.moods.choose_multiple(rng, 2).copied().collect();
    moods.sort_unstable();
    let instruments: Vec<&str> = family
        .instruments
        .choose_multiple(rng, 3)
        .copied()
        .collect();
    let voice = if brief.instrumental() {
        "instrumental, no vocals".to_string()
    } else {
        pick(rng, family.vocals).to_string()
    };
    let mut caption = format!(
        "{genre}, {} and {}, {}, {} and {}, {voice}",
        moods.first().copied().unwrap_or("warm"),
        moods.get(1).copied().unwrap_or("catchy"),
        instruments.first().copied().unwrap_or("drums"),
        instruments.get(1).copied().unwrap_or("bass"),
        instruments.get(2).copied().unwrap_or("keys"),
    );
    let style = lyrics::clean_line(&brief.station.style);
    if !style.is_empty() {
        caption.push_str(", ");
        caption.push_str(&style.to_lowercase());
    }
    let theme = lyrics::clean_line(&brief.station.theme);
    if !theme.is_empty() {
        caption.push_str(", evoking ");
        caption.push_str(&theme.to_lowercase());
    }
    lyrics::truncate_words(&caption, MAX_CAPTION_CHARS)
}

// Line banks. `{t}` is the theme phrase, `{k}` its keyword, `{a}` an adjective, `{n}` a noun (lowercase),
// `{T}` the title.
const VERSE_LINES: [&str; 16] = [
    "Walking through the {n} with {t} in my mind",
    "Every {n} is whispering of {t}",
    "I keep a {a} light burning through the night",
    "Counting all the {n} we left behind",
    "The streets are {a} and the hours are slow",
    "Your voice is in the {n} wherever I go",
    "We wrote our names on the {n} in the dark",
    "Somewhere in {t} I found a spark",
    "The radio hums a {a} melody",
    "And {k} keeps calling out to me",
    "Footsteps fading on the {n} below",
    "Holding on to {t}, moving slow",
    "The {n} is turning gold above the town",
    "I hear the {a} echoes coming down",
    "Pages of the {n} blowing in the wind",
    "Waiting for the moment to begin",
];

const CHORUS_LINES: [&str; 10] = [
    "Oh, {t}, carry me home",
    "We are {a} tonight, we are never alone",
    "Hold on to the {n}, never let it go",
    "{T}, sing it soft and slow",
    "Take me where the {n} glows",
    "Lost in {t}, lost in you",
    "Every heartbeat says it's true",
    "Light it up, {k}, light it up again",
    "Dancing in the {n} until the end",
    "This is where the {a} rivers flow",
];

const BRIDGE_LINES: [&str; 6] = [
    "And if the {n} should fall, I'll still be here",
    "Close your eyes, the {a} sky is near",
    "Nothing lasts forever, but tonight it might",
    "Turn the {n} over, hold it to the light",
    "All the roads lead back to {t}",
    "Breathe in slow and let the world go by",
];

const INTRO_LINES: [&str; 4] = [
    "Mm, {a} {n}",
    "Here we go again",
    "Oh-oh, {k}",
    "Listen to the {n}",
];

const OUTRO_LINES: [&str; 5] = [
    "{T}, fading out",
    "Just {t} and me",
    "Carry me home",
    "Oh, {k}, goodnight",
    "Let the {n} sing",
];

fn fill<R: Rng>(rng: &mut R, template: &str, theme: &Theme, title: &str) -> String {
    let line = template
        .replace("{t}", &theme.phrase)
        .replace("{k}", &theme.keyword)
        .replace("{T}", title)
        .replace("{a}", &pick(rng, &ADJECTIVES).to_lowercase())
        .replace("{n}", &pick(rng, &NOUNS).to_lowercase());
    let line = lyrics::clean_line(&line);
    capitalise_first(&line)
}

fn capitalise_first(line: &str) -> String {
    let mut chars = line.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn draw_lines<R: Rng>(
    rng: &mut R,
    bank: &[&str],
    count: usize,
    theme: &Theme,
    title: &str,
) -> Vec<String> {
    bank.choose_multiple(rng, count)
        .map(|t| fill(rng, t, theme, title))
        .collect()
}

fn make_lyrics<R: Rng>(rng: &mut R, brief: &SongBrief, theme: &Theme, title: &str) -> String {
    let plan = brief.lyrics_plan();
    let n = plan.target_lines;
    // One chorus, repeated as choruses are.
    let chorus = draw_lines(rng, &CHORUS_LINES, n, theme, title);
    let sections: Vec<Section> = plan
        .sequence()
        .iter()
        .map(|tag| {
            let lines = match *tag {
                "chorus" => chorus.clone(),
                "intro" => draw_lines(rng, &INTRO_LINES, 1, theme, title),
                "outro" => draw_lines(rng, &OUTRO_LINES, 2.min(n), theme, title),
                "bridge" | "pre-chorus" => draw_lines(rng, &BRIDGE_LINES, 2, theme, title),
                _ => draw_lines(rng, &VERSE_LINES, n, theme, title),
            };
            Section { tag, lines }
        })
        .collect();
    lyrics::render(&sections)
}

#[cfg(test)]
mod tests {
    use super::*;
    use radio_shared::job::{SongRequest, Station};

    fn brief(
        genre: &str,
        theme: &str,
        instrumental: bool,
        duration_s: f32,
        seed: u64,
    ) -> SongBrief {
        SongBrief {
            station: Station {
                genre: genre.into(),
                theme: theme.into(),
                style: "warm tape".into(),
                language: "es".into(),
                instrumental,
            },
            request: SongRequest {
                duration_s,
                ..SongRequest::default()
            },
            recent_titles: Vec::new(),
            seed,
        }
    }

    #[test]
    fn every_family_and_length_gives_a_valid_description() {
        let genres = [
            "lofi hip hop",
            "death metal",
            "indie rock",
            "deep house",
            "bebop jazz",
            "neo soul",
            "bluegrass",
            "orchestral",
            "reggaeton",
            "polka",
            "",
            "[weird] <genre>",
        ];
        for (i, genre) in genres.iter().enumerate() {
            for duration in [5.12, 30.0, 95.0, 240.0, 600.0] {
                for instrumental in [false, true] {
                    let b = brief(
                        genre,
                        "rainy city nights",
                        instrumental,
                        duration,
                        i as u64 * 7 + 1,
                    );
                    let d = super::super::finalize(TemplateSongWriter.describe(&b), &b);
                    assert_eq!(
                        d.check(&b),
                        Ok(()),
                        "{genre} {duration} {instrumental}: {d:#?}"
                    );
                    assert_eq!(d.language, "es");
                }
            }
        }
    }

    #[test]
    fn the_seed_decides_and_recent_titles_are_avoided() {
        let a = brief("synthwave", "neon skylines", false, 60.0, 42);
        assert_eq!(
            TemplateSongWriter.describe(&a),
            TemplateSongWriter.describe(&a)
        );
        let b = brief("synthwave", "neon skylines", false, 60.0, 43);
        assert_ne!(
            TemplateSongWriter.describe(&a),
            TemplateSongWriter.describe(&b)
        );

        let first = TemplateSongWriter.describe(&a).title;
        let mut again = a.clone();
        again.recent_titles = vec![first.to_uppercase()];
        assert_ne!(
            TemplateSongWriter.describe(&again).title.to_lowercase(),
            first.to_lowercase()
        );
    }

    #[test]
    fn waltzes_are_in_three() {
        let b = brief("jazz waltz", "autumn", false, 60.0, 9);
        assert_eq!(TemplateSongWriter.describe(&b).timesignature, 3);
    }
}
