//! Suggestions and fixed choices offered in Discord's option pickers.

/// Genres suggested by autocomplete (free text is accepted too).
pub const GENRES: &[&str] = &[
    "lofi hip hop",
    "synthwave",
    "jazz",
    "smooth jazz",
    "bossa nova",
    "blues",
    "funk",
    "soul",
    "r&b",
    "hip hop",
    "trap",
    "pop",
    "k-pop",
    "j-pop",
    "city pop",
    "indie rock",
    "rock",
    "punk rock",
    "metal",
    "folk",
    "acoustic",
    "country",
    "reggae",
    "dub",
    "house",
    "deep house",
    "techno",
    "trance",
    "drum and bass",
    "ambient",
    "chillout",
    "classical",
    "epic orchestral",
    "cinematic",
    "chiptune",
    "latin",
    "afrobeat",
    "gospel",
];

/// Themes suggested by autocomplete.
pub const THEMES: &[&str] = &[
    "late night city",
    "rainy afternoon",
    "summer road trip",
    "falling in love",
    "heartbreak",
    "space travel",
    "ocean waves",
    "morning coffee",
    "studying late",
    "victory and triumph",
    "nostalgia",
    "winter cabin",
    "neon dreams",
    "friendship",
    "adventure",
];

/// Production styles suggested by autocomplete.
pub const STYLES: &[&str] = &[
    "warm tape, mellow keys",
    "crisp modern production",
    "lo-fi vinyl crackle",
    "analog synths, gated reverb",
    "live band, room sound",
    "acoustic guitar and soft vocals",
    "big drums, wide stereo",
    "minimal, sparse arrangement",
    "orchestral strings and brass",
    "8-bit square waves",
];

/// Language choices: (shown name, value). `instrumental` means no vocals.
pub const LANGUAGES: &[(&str, &str)] = &[
    ("English", "en"),
    ("Spanish", "es"),
    ("French", "fr"),
    ("German", "de"),
    ("Italian", "it"),
    ("Portuguese", "pt"),
    ("Dutch", "nl"),
    ("Swedish", "sv"),
    ("Polish", "pl"),
    ("Russian", "ru"),
    ("Ukrainian", "uk"),
    ("Turkish", "tr"),
    ("Arabic", "ar"),
    ("Hindi", "hi"),
    ("Japanese", "ja"),
    ("Korean", "ko"),
    ("Chinese", "zh"),
    ("Indonesian", "id"),
    ("Vietnamese", "vi"),
    ("Thai", "th"),
    ("Instrumental (no vocals)", "instrumental"),
];

/// The value of the "no vocals" language choice.
pub const INSTRUMENTAL: &str = "instrumental";

/// The shown name of a language value.
pub fn language_name(code: &str) -> String {
    LANGUAGES
        .iter()
        .find(|(_, c)| *c == code)
        .map_or_else(|| code.to_string(), |(name, _)| (*name).to_string())
}
