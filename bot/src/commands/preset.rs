//! `/radio preset`: a named station (genre, theme, style, language in one go).

use radio_shared::job::Station;
use twilight_util::builder::command::{StringBuilder, SubCommandBuilder};

use super::Ctx;
use crate::interaction::Reply;
use crate::user_error::{CommandError, UserError};

/// A named station.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    /// The choice value and shown name.
    pub name: &'static str,
    /// Genre.
    pub genre: &'static str,
    /// Theme.
    pub theme: &'static str,
    /// Style.
    pub style: &'static str,
    /// Lyrics language.
    pub language: &'static str,
    /// No vocals.
    pub instrumental: bool,
}

/// The presets offered.
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "lofi",
        genre: "lofi hip hop",
        theme: "late night studying",
        style: "warm tape, mellow keys, vinyl crackle",
        language: "en",
        instrumental: true,
    },
    Preset {
        name: "synthwave",
        genre: "synthwave",
        theme: "neon city drive at night",
        style: "analog synths, gated reverb drums",
        language: "en",
        instrumental: false,
    },
    Preset {
        name: "jazz-cafe",
        genre: "smooth jazz",
        theme: "rainy afternoon in a cafe",
        style: "upright bass, brushed drums, soft piano",
        language: "en",
        instrumental: true,
    },
    Preset {
        name: "epic",
        genre: "epic orchestral",
        theme: "heroes and victory",
        style: "orchestral strings and brass, big drums",
        language: "en",
        instrumental: true,
    },
    Preset {
        name: "folk",
        genre: "acoustic folk",
        theme: "home and the open road",
        style: "acoustic guitar and soft vocals",
        language: "en",
        instrumental: false,
    },
    Preset {
        name: "city-pop",
        genre: "city pop",
        theme: "summer evenings by the sea",
        style: "crisp 80s production, funky bass",
        language: "ja",
        instrumental: false,
    },
    Preset {
        name: "reggae",
        genre: "reggae",
        theme: "sunshine and friendship",
        style: "offbeat guitar, deep bass, live band",
        language: "en",
        instrumental: false,
    },
    Preset {
        name: "metal",
        genre: "heavy metal",
        theme: "storms and fire",
        style: "distorted guitars, double kick drums",
        language: "en",
        instrumental: false,
    },
    Preset {
        name: "ambient",
        genre: "ambient",
        theme: "drifting through space",
        style: "minimal, sparse pads, long reverb",
        language: "en",
        instrumental: true,
    },
    Preset {
        name: "chiptune",
        genre: "chiptune",
        theme: "retro video game adventure",
        style: "8-bit square waves, fast arpeggios",
        language: "en",
        instrumental: true,
    },
];

/// The subcommand's definition.
pub fn definition() -> SubCommandBuilder {
    SubCommandBuilder::new("preset", "Switch to a ready-made station").option(
        StringBuilder::new("name", "The station")
            .required(true)
            .choices(PRESETS.iter().map(|p| (p.name, p.name))),
    )
}

/// Applies it.
pub async fn run(ctx: &Ctx, name: String) -> Result<(), CommandError> {
    let preset = *PRESETS
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| UserError::InvalidOption(format!("There is no preset called `{name}`.")))?;
    ctx.station()
        .update(Box::new(move |s| {
            s.music = Station {
                genre: preset.genre.into(),
                theme: preset.theme.into(),
                style: preset.style.into(),
                language: preset.language.into(),
                instrumental: preset.instrumental,
            };
            s.preset = Some(preset.name.into());
        }))
        .await?;
    ctx.responder
        .send(Reply::text(format!(
            "🎚️ Preset **{}**: {} about {}{}.",
            preset.name,
            preset.genre,
            preset.theme,
            if preset.instrumental {
                ", instrumental"
            } else {
                ""
            }
        )))
        .await;
    Ok(())
}
